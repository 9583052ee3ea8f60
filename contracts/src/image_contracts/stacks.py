"""The Pulumi project name and the service-layer config keys the pipeline sets per canary step."""

PROJECT = "image-platform"

STABLE_VERSION_KEY = "stableVersion"
CANARY_VERSION_KEY = "canaryVersion"
CANARY_WEIGHT_KEY = "canaryWeight"


def config_key(key: str) -> str:
    """The fully qualified stack config key, as `pulumi config set` and stack files spell it."""
    return f"{PROJECT}:{key}"
