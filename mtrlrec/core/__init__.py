"""The small kernel every part of mtrlrec imports."""

from mtrlrec.core.agent import Agent, AgentState
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.spaces import Box, Discrete, Slate, Space
from mtrlrec.core.types import ActInfo, Array, PRNGKey, Transition

__all__ = [
    "ActInfo", "Agent", "AgentState", "Array", "Box", "ConfigError", "Discrete",
    "Environment", "PRNGKey", "Slate", "Space", "Transition",
]
