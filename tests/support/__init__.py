"""Test doubles and harnesses shared by the tests and by `python -m bench`.

Not part of the installed product: bench imports these from the checkout.

- `net`: fake DNS, a loopback-only connection guard, a hostile image server.
- `lambda_runtime_api`: a local Lambda Runtime API for the real awslambdaric.
- `buggy_handler`: the product handler plus one deliberate bug.
- `dockerfile`: the Dockerfile's contents rebuilt without Docker.
- `browser`: headless Chromium driving the listing page.
"""
