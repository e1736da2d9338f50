"""The parts of the live console (:mod:`chassis_console.app`): pollers, panels and screens."""

from .detail import WorkerDetailScreen, stack_view
from .dialogs import ConfirmKillScreen, HelpScreen
from .history import HistoryPanel
from .polling import ConsoleOptions, TargetPoller, TargetStatus
from .services import PoolGauges, ServiceTree
from .status import ConsoleView, StatusBar
from .workers import WorkerRef, WorkersTable

__all__ = [
    "ConfirmKillScreen", "ConsoleOptions", "ConsoleView", "HelpScreen", "HistoryPanel",
    "PoolGauges", "ServiceTree", "StatusBar", "TargetPoller", "TargetStatus",
    "WorkerDetailScreen", "WorkerRef", "WorkersTable", "stack_view",
]
