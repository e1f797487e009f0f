"""aiocelery: an asyncio-native distributed task queue on Redis."""

from aiocelery._version import __version__ as __version__
from aiocelery.app import App as App
from aiocelery.app import TaskDecorator as TaskDecorator
from aiocelery.config import AMQPConfig as AMQPConfig
from aiocelery.config import Config as Config
from aiocelery.exceptions import AioCeleryError as AioCeleryError
from aiocelery.exceptions import BrokerError as BrokerError
from aiocelery.exceptions import CanvasError as CanvasError
from aiocelery.exceptions import ConfigError as ConfigError
from aiocelery.exceptions import DeadLetterError as DeadLetterError
from aiocelery.exceptions import EncodeError as EncodeError
from aiocelery.exceptions import NotRegistered as NotRegistered
from aiocelery.exceptions import ResultError as ResultError
from aiocelery.exceptions import ResultLost as ResultLost
from aiocelery.exceptions import ResultNotFound as ResultNotFound
from aiocelery.exceptions import ResultTimeout as ResultTimeout
from aiocelery.exceptions import Retry as Retry
from aiocelery.exceptions import SendError as SendError
from aiocelery.exceptions import SoftTimeLimitExceeded as SoftTimeLimitExceeded
from aiocelery.exceptions import TaskArgumentsError as TaskArgumentsError
from aiocelery.exceptions import TaskDead as TaskDead
from aiocelery.exceptions import TaskError as TaskError
from aiocelery.exceptions import TaskFailed as TaskFailed
from aiocelery.exceptions import TaskRevoked as TaskRevoked
from aiocelery.exceptions import TimeLimitExceeded as TimeLimitExceeded
from aiocelery.tasks.args import Arg as Arg
from aiocelery.tasks.canvas import chain as chain
from aiocelery.tasks.canvas import chord as chord
from aiocelery.tasks.canvas import group as group
from aiocelery.tasks.context import TaskContext as TaskContext
from aiocelery.tasks.context import current_task as current_task
from aiocelery.tasks.hooks import Hooks as Hooks
from aiocelery.tasks.result import AsyncResult as AsyncResult
from aiocelery.tasks.result import GroupResult as GroupResult
from aiocelery.tasks.signature import Signature as Signature
from aiocelery.tasks.task import Task as Task
from aiocelery.timing.retry import RetryPolicy as RetryPolicy
from aiocelery.wire.message import TaskMessage as TaskMessage
from aiocelery.wire.records import Delivery as Delivery
from aiocelery.wire.records import ErrorInfo as ErrorInfo
from aiocelery.worker.worker import Worker as Worker

__all__ = [
    "AMQPConfig",
    "AioCeleryError",
    "App",
    "Arg",
    "AsyncResult",
    "BrokerError",
    "CanvasError",
    "Config",
    "ConfigError",
    "DeadLetterError",
    "Delivery",
    "EncodeError",
    "ErrorInfo",
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
    "TaskMessage",
    "TaskRevoked",
    "TimeLimitExceeded",
    "Worker",
    "__version__",
    "chain",
    "chord",
    "current_task",
    "group",
]
