"""The interfaces a generated model package implements (torchtitan's pre-0.3 shapes)."""

from runtime.protocols.model import BaseModelArgs, ModelProtocol
from runtime.protocols.state_dict_adapter import StateDictAdapter
from runtime.protocols.train_spec import (
    TrainSpec,
    get_train_spec,
    list_train_specs,
    register_train_spec,
)

__all__ = [
    "BaseModelArgs",
    "ModelProtocol",
    "StateDictAdapter",
    "TrainSpec",
    "get_train_spec",
    "list_train_specs",
    "register_train_spec",
]
