"""Kedro project settings: the config loader, the hooks, no telemetry."""

import os

from omegaconf.resolvers import oc

from pipelines.hooks import InputErrorHook, RunTagsHook
from pipelines.ranks import OtherRanksTrackingOff

# No telemetry from any component (kedro-telemetry is uninstalled by `make setup`; belt and braces).
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

HOOKS = (RunTagsHook(), InputErrorHook(), OtherRanksTrackingOff())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `${env:NAME,default}` lets settings such as the MLflow tracking URI come from the environment.
    "custom_resolvers": {"env": oc.env},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
