"""template.yaml's state machine as Step Functions would receive it, for checks.

    python -m tests.support.state_machine template.yaml > state_machine.json
    npx --yes asl-validator@4.0.0 --json-path state_machine.json   # .ci/run does this

cfn-lint validates the template but not the Amazon States Language inside a SAM
`Definition`; asl-validator does, once the `${...}` DefinitionSubstitutions are
replaced (here by sample values of the right kinds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESOURCE = "BulkClassifier"
SAMPLE_SUBSTITUTIONS = {
    "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:clothing-classifier",
    "InputBucket": "photos-allowed",
    "ResultsBucket": "photos-results",
    "ResultsPrefix": "classifications/",
    "BatchSize": "50",
    "MaxConcurrency": "100",
    "ToleratedFailurePercentage": "5",
}


def load_template(path: Path) -> dict[str, Any]:
    """template.yaml as plain dicts (CloudFormation tags such as !Ref become {"Ref": ...})."""
    from cfnlint.decode import decode

    parsed, matches = decode(str(path))
    if matches or parsed is None:
        raise ValueError(f"{path} does not parse: {matches}")
    template: dict[str, Any] = json.loads(json.dumps(parsed))
    return template


def definition(template: dict[str, Any], substitutions: dict[str, str] | None = None) -> Any:
    """The state machine's definition; with `substitutions`, its `${name}` placeholders
    replaced as CloudFormation's DefinitionSubstitutions would (textually)."""
    raw = template["Resources"][RESOURCE]["Properties"]["Definition"]
    if substitutions is None:
        return raw
    text = json.dumps(raw)
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", value)
    return json.loads(text)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.support.state_machine template.yaml", file=sys.stderr)
        return 2
    template = load_template(Path(argv[0]))
    print(json.dumps(definition(template, SAMPLE_SUBSTITUTIONS), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
