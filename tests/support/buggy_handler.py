"""The product's handler plus one deliberate bug, for tests/test_lambda_runtime.py.

The product has no test hooks; to show that a real bug (an exception that is
not a typed InferenceError) reaches the runtime's error endpoint and that the
process keeps serving afterwards, the runtime test starts awslambdaric with
this module's handler. Every event except the bug trigger goes to
`lambda_function.lambda_handler` unchanged.
"""

from __future__ import annotations

from typing import Any

import lambda_function

BUG_TRIGGER = "__deliberate_bug__"


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    if isinstance(event, dict) and BUG_TRIGGER in event:
        return {"oops": 1 / 0}  # a bug: ZeroDivisionError
    return lambda_function.lambda_handler(event, context)
