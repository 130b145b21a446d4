"""One module per dataset; importing this package registers them all."""

from merkit.data.loaders import casme2, casme3, megc2019, megc2019_flow, mmew, samm, smic

__all__ = ["casme2", "casme3", "megc2019", "megc2019_flow", "mmew", "samm", "smic"]
