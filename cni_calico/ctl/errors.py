"""The one error calicoctl commands raise: printed as one line, exit status 1."""


class CtlError(Exception):
    pass
