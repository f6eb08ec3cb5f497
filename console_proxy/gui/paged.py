"""A table model over a list route of the admin API, fetched page by page as the view scrolls.

The admin API's lists are pages with a cursor (``{"items", "next"}``).
:class:`PagedModel` holds only the rows fetched so far: the view asks for
more (``canFetchMore``/``fetchMore``) when it is scrolled near the end, and
the next page is fetched on a worker thread and appended when it arrives,
so a fleet of 100,000 devices costs one page at a time and the UI thread
never waits.  Sorting orders the rows fetched so far (the API pages in its
own order); rows fetched later take their place in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor

from console_proxy.client.models import Page
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import cell

T = TypeVar("T")
Index = QModelIndex | QPersistentModelIndex

PAGE_SIZE = 200
"""Rows per request: a screenful several times over, well under the API's maximum of 500."""


@dataclass(frozen=True)
class Column(Generic[T]):
    """A column: its header, the value shown for a row, and optionally a sort key."""

    header: str
    value: Callable[[T], Any]
    key: Callable[[T], Any] | None = None


def _sort_key(value: Any) -> tuple[int, Any]:
    # Nothing sorts last; numbers as numbers, the rest as text.
    if value is None or value == "" or value == "-":
        return (2, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value).lower())


class PagedModel(QAbstractTableModel, Generic[T]):
    """Rows of ``T`` from ``fetch(after_cursor, limit)``, page by page, on worker threads.

    ``loaded(rows)`` is emitted after each page arrives; ``failed(exc)`` when
    a fetch fails (the view shows it).  :meth:`reset` starts over with a new
    ``fetch`` (a new search); answers of an older search are dropped.
    """

    loaded = Signal(int)
    failed = Signal(object)

    def __init__(self, tasks: Tasks, columns: Sequence[Column[T]],
                 fetch: Callable[[str | None, int], Page[T]] | None = None, *,
                 page_size: int | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks = tasks
        self.columns = list(columns)
        self._fetch = fetch
        self.page_size = page_size or PAGE_SIZE
        self._rows: list[T] = []
        self._cursor: str | None = None
        self._more = False
        self._loading = False
        self._generation = 0
        self._sort: tuple[int, Qt.SortOrder] | None = None
        self.highlight: Callable[[T], QColor | None] | None = None
        """Optional: the background colour of a row (alerts, refused requests)."""
        self.pages = 0
        """Pages fetched since the last reset."""

    # -- the data ---------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        """Rows fetched so far."""
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        """The columns."""
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """A cell's text (display, tooltip), the row's object (user role), its colour."""
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        row = self._rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return cell(self.columns[index.column()].value(row))
        if role == Qt.ItemDataRole.UserRole:
            return row
        if role == Qt.ItemDataRole.BackgroundRole and self.highlight is not None:
            colour = self.highlight(row)
            return None if colour is None else QBrush(colour)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Column headers."""
        if (role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal
                and 0 <= section < len(self.columns)):
            return self.columns[section].header
        return None

    def item(self, row: int) -> T:
        """The object shown in ``row``."""
        return self._rows[row]

    def items(self) -> list[T]:
        """Every object fetched so far, in display order."""
        return list(self._rows)

    def column_texts(self, header: str) -> list[str]:
        """The texts of one column, top to bottom (for tests and screenshots)."""
        column = next(c for c in self.columns if c.header == header)
        return [cell(column.value(r)) for r in self._rows]

    # -- paging -----------------------------------------------------------------------------

    @property
    def loading(self) -> bool:
        """True while a page is being fetched."""
        return self._loading

    @property
    def has_more(self) -> bool:
        """True when the server said there is a next page."""
        return self._more

    def reset(self, fetch: Callable[[str | None, int], Page[T]] | None = None) -> None:
        """Forget the rows and fetch the first page (of ``fetch``, if a new one is given)."""
        if fetch is not None:
            self._fetch = fetch
        self._generation += 1
        self.beginResetModel()
        self._rows, self._cursor, self._more, self._loading = [], None, False, False
        self.pages = 0
        self.endResetModel()
        if self._fetch is not None:
            self._request()

    def show(self, rows: Sequence[T]) -> None:
        """Show exactly ``rows`` (a search that found one device), with no further pages."""
        self._generation += 1
        self.beginResetModel()
        self._rows, self._cursor, self._more, self._loading = list(rows), None, False, False
        self.endResetModel()
        self.loaded.emit(len(self._rows))

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008, N802
        """True when there is a next page and none is being fetched."""
        return not parent.isValid() and self._more and not self._loading

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008, N802
        """Fetch the next page on a worker thread (the view calls this near the end)."""
        if self.canFetchMore(parent):
            self._request()

    def _request(self) -> None:
        fetch = self._fetch
        assert fetch is not None
        generation = self._generation
        self._loading = True
        self._tasks.run(fetch, self._cursor, self.page_size,
                        on_done=lambda page: self._arrived(generation, page),
                        on_error=lambda exc: self._fetch_failed(generation, exc))

    def _arrived(self, generation: int, page: Page[T]) -> None:
        if generation != self._generation:
            return  # an answer to a search that was replaced
        self._loading = False
        self.pages += 1
        self._cursor, self._more = page.next, page.next is not None
        if page.items:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(page.items) - 1)
            self._rows.extend(page.items)
            self.endInsertRows()
            if self._sort is not None:
                self.sort(*self._sort)
        self.loaded.emit(len(self._rows))

    def _fetch_failed(self, generation: int, exc: BaseException) -> None:
        if generation != self._generation:
            return
        self._loading = False
        self._more = False
        self.failed.emit(exc)

    # -- sorting and updates ----------------------------------------------------------------

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Order the rows fetched so far by ``column``."""
        if not 0 <= column < len(self.columns):
            return
        self._sort = (column, order)
        spec = self.columns[column]
        key = spec.key or spec.value
        self.layoutAboutToBeChanged.emit()
        self._rows.sort(key=lambda row: _sort_key(key(row)),
                        reverse=order == Qt.SortOrder.DescendingOrder)
        self.layoutChanged.emit()

    def refresh_rows(self) -> None:
        """Repaint every row (a value computed from elsewhere, such as open alerts, changed)."""
        if self._rows:
            self.dataChanged.emit(self.index(0, 0),
                                  self.index(len(self._rows) - 1, len(self.columns) - 1))
