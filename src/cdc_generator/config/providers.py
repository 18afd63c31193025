"""How the Kafka Connect worker resolves the config's ${VAR} placeholders: the config
provider each environment chooses (`environments.<env>.secrets`), and the reference
that stands for a placeholder in a generated connector config."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

#: a ${VAR} placeholder of the config
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def env_var_name(*parts: str) -> str:
    """The default placeholder name of a setting: POSTGRES_<GROUP>_PORT and the like."""
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).upper() for p in parts)


@dataclass(frozen=True)
class Secrets:
    """How the worker resolves the config's ${VAR} placeholders (a config provider)."""

    provider: str = "env"  # env | kubernetes | directory
    name: str = ""  # kubernetes: the Secret's name
    path: str = ""  # directory: where the Secret is mounted

    def reference(self, var: str, namespace: str) -> str:
        """The config-provider reference that stands for ${var} in a connector config."""
        if self.provider == "kubernetes":
            return f"${{secrets:{namespace}/{self.name}:{var}}}"
        if self.provider == "directory":
            return f"${{dir:{self.path}:{var}}}"
        return f"${{env:{var}}}"


ENV_SECRETS = Secrets()


def connect_ref(value: str, secrets: Secrets = ENV_SECRETS, namespace: str = "") -> str:
    """`${VAR}` in our config -> the reference the worker's config provider resolves:
    `${env:VAR}` (EnvVarConfigProvider), `${secrets:<namespace>/<name>:VAR}`
    (Strimzi's KubernetesSecretConfigProvider) or `${dir:<path>:VAR}`
    (DirectoryConfigProvider), as the environment's `secrets:` says."""
    return PLACEHOLDER.sub(lambda m: secrets.reference(m.group(1), namespace), value)


@cache
def connect_refs(secrets: Secrets, namespace: str) -> Callable[[str], str]:
    """`connect_ref` for one environment, memoised: the same few server and sink
    settings recur in every pipeline."""
    return cache(lambda value: connect_ref(value, secrets, namespace))
