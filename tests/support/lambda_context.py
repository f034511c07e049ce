"""What the handler reads of awslambdaric's LambdaContext, and the answer's keys.

One stand-in for the tests that call `lambda_function.lambda_handler` directly
(handler, batch, S3 and page tests), so a change to what the handler reads
from its context is made once.
"""

from __future__ import annotations

import time

# The keys of a classification answer (README "Events and answers").
ANSWER_KEYS = frozenset(
    {"label", "unsure", "confidence", "unsure_threshold", "scores", "logits", "top", "model"}
)


class LambdaContext:
    """The parts of awslambdaric's LambdaContext the handler reads.

    Args:
        remaining_ms: the function's time left when the context is made; it
            counts down with `time.monotonic()`, as Lambda's does.
        request_id: `aws_request_id`, which the handler logs.
    """

    def __init__(self, remaining_ms: int = 30_000, request_id: str = "req-123") -> None:
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)
