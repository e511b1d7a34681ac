"""stations.yaml -> validated, immutable config (pydantic v2) with FILE:LINE errors.

| module | its one job |
|---|---|
| `model.py` | the whole file as one model, assembled from the sections' owners |
| `load.py` | read the YAML, merge templates into stations, validate, cross-check |
| `errors.py` | pydantic errors -> `FILE:LINE key.path: problem`, with "did you mean" |
| `fleet.py` | shards, the check-config summary, endpoint ports |

The drivers' models (tags, endpoints) are re-exported here for callers that think in
stations.yaml terms; their owner is `drivers/schema.py`.
"""

from drivers.schema import (
    ModbusEndpoint,
    ModbusTag,
    OpcuaEndpoint,
    OpcuaSecurity,
    OpcuaTag,
)
from stationd.config.errors import ConfigError
from stationd.config.fleet import endpoint_ports, remap_ports, shard_of, summary
from stationd.config.load import load_config
from stationd.config.model import (
    AnyStation,
    Config,
    Control,
    Defaults,
    HttpConfig,
    ModbusStation,
    OpcuaStation,
    SectionError,
    Site,
    Station,
    StationBase,
)

__all__ = [
    "AnyStation",
    "Config",
    "ConfigError",
    "Control",
    "Defaults",
    "HttpConfig",
    "ModbusEndpoint",
    "ModbusStation",
    "ModbusTag",
    "OpcuaEndpoint",
    "OpcuaSecurity",
    "OpcuaStation",
    "OpcuaTag",
    "SectionError",
    "Site",
    "Station",
    "StationBase",
    "endpoint_ports",
    "load_config",
    "remap_ports",
    "shard_of",
    "summary",
]
