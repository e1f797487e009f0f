"""aiocelery: an asyncio-native distributed task queue on Redis."""

from ._version import __version__ as __version__
from .app import App as App
from .app import TaskDecorator as TaskDecorator
from .args import Arg as Arg
from .canvas import chain as chain
from .canvas import chord as chord
from .canvas import group as group
from .config import AMQPConfig as AMQPConfig
from .config import Config as Config
from .context import TaskContext as TaskContext
from .context import current_task as current_task
from .exceptions import AioCeleryError as AioCeleryError
from .exceptions import CanvasError as CanvasError
from .exceptions import ConfigError as ConfigError
from .exceptions import EncodeError as EncodeError
from .exceptions import NotRegistered as NotRegistered
from .exceptions import ResultError as ResultError
from .exceptions import ResultLost as ResultLost
from .exceptions import ResultNotFound as ResultNotFound
from .exceptions import ResultTimeout as ResultTimeout
from .exceptions import Retry as Retry
from .exceptions import SendError as SendError
from .exceptions import SoftTimeLimitExceeded as SoftTimeLimitExceeded
from .exceptions import TaskArgumentsError as TaskArgumentsError
from .exceptions import TaskDead as TaskDead
from .exceptions import TaskError as TaskError
from .exceptions import TaskFailed as TaskFailed
from .exceptions import TaskRevoked as TaskRevoked
from .hooks import Hooks as Hooks
from .result import AsyncResult as AsyncResult
from .result import GroupResult as GroupResult
from .retry import RetryPolicy as RetryPolicy
from .signature import Signature as Signature
from .task import Task as Task
from .worker.worker import Worker as Worker

__all__ = [
    "AMQPConfig",
    "AioCeleryError",
    "App",
    "Arg",
    "AsyncResult",
    "CanvasError",
    "Config",
    "ConfigError",
    "EncodeError",
    "GroupResult",
    "Hooks",
    "NotRegistered",
    "ResultError",
    "ResultLost",
    "ResultNotFound",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "SendError",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskArgumentsError",
    "TaskContext",
    "TaskDead",
    "TaskDecorator",
    "TaskError",
    "TaskFailed",
    "TaskRevoked",
    "Worker",
    "__version__",
    "chain",
    "chord",
    "current_task",
    "group",
]
