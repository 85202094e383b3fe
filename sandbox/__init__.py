"""Local multi-region sandbox: runs every region of the synthesized app on this machine.

``python -m sandbox`` reads the CloudFormation templates and asset folders in ``cdk.out`` and
serves, per region, a WebSocket API, the ``@connections`` management API, an EventBridge
PutEvents endpoint that applies the templates' rules, and DynamoDB (moto), with every handler
running unmodified in its own worker process. See docs/sandbox.md.
"""
