"""Deploy this checkout's flows to a Prefect work pool: ``python flows/deploy.py --pool NAME``.

Thin: the deployment logic is :mod:`crisiscomms.flows.deploy` (see docs/scaling.md).
"""

from crisiscomms.flows.deploy import main

if __name__ == "__main__":
    main()
