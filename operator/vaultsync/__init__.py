"""vaultsync: keeps Vault/OpenBao and a Kubernetes cluster in step."""

GROUP = "vaultsync.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "vaultsync"
