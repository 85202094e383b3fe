"""The one error type the sandbox stops with: a clear message naming the resource."""


class SandboxError(Exception):
    """Bad input (cdk.out, a template, a port): printed as one line, exit status 2."""
