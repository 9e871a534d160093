# What `make build` writes into cni_calico/_build.py (not kept in git), for the type checker:
# without the file, build_info falls back to asking git.
GIT_COMMIT: str
BUILD_DATE: str
