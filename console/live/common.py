"""Small helpers shared by the console's widgets: theme colours as rich styles, cell text."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from rich.cells import cell_len, set_cell_size
from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._segment_tools import line_crop
from textual.app import App
from textual.cache import LRUCache
from textual.geometry import Region
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Static
from textual.widgets.data_table import CellDoesNotExist

from nameko_chassis.view.text import clip, format_age, pool_level


@dataclass(frozen=True)
class Palette:
    """The current theme's colours, for rich ``Text`` (which cannot use TCSS variables)."""

    primary: str = "#0178D4"
    accent: str = "#ffa62b"
    success: str = "#4EBF71"
    warning: str = "#ffa62b"
    error: str = "#ba3c5b"
    muted: str = "#7f7f7f"

    @classmethod
    def of(cls, app: App[Any]) -> Palette:
        try:
            theme = app.current_theme
        except Exception:  # no theme yet (not running): defaults
            return cls()
        return cls(primary=theme.primary, accent=theme.accent or cls.accent,
                   success=theme.success or cls.success, warning=theme.warning or cls.warning,
                   error=theme.error or cls.error)


class SortText(Text):
    """A table cell that carries the value its column sorts by."""

    sort_value: Any = None


def cell(value: Any, style: str = "", *, limit: int = 80, sort: Any = None) -> SortText:
    """Untrusted text as a one-line table cell (never markup, control characters escaped)."""
    text = SortText(clip(value, limit), style=style, no_wrap=True, overflow="ellipsis")
    text.sort_value = sort if sort is not None else text.plain.lower()
    return text


def update_static(widget: Static, content: RenderableType, shape: Hashable,
                  drawn_from: Hashable = None) -> None:
    """``widget.update(content)``, laying the screen out again only when ``shape`` (whatever
    decides the widget's height) changed: an update of the same size repaints that widget
    alone, where a layout repaints every widget on the screen (most of a refresh's cost).
    With ``drawn_from`` (what the content is made of, e.g. :func:`text_key` of its texts), an
    update drawn from the same as the last one is skipped: no render, no repaint."""
    shape = (widget.size.width, shape)
    if (drawn_from is not None and widget.__dict__.get("_chassis_shape") == shape
            and widget.__dict__.get("_chassis_drawn_from") == drawn_from):
        return
    layout = widget.__dict__.get("_chassis_shape") != shape
    widget.__dict__["_chassis_shape"] = shape
    widget.__dict__["_chassis_drawn_from"] = drawn_from
    widget.update(content, layout=layout)


def set_border(widget: Widget, title: str | None, subtitle: str | None) -> None:
    """Set a panel's border title and subtitle, only when they change: textual repaints the
    whole widget on every assignment, even of the same text (a table: every line on screen)."""
    if widget.__dict__.get("_chassis_border") == (title, subtitle):
        return
    widget.__dict__["_chassis_border"] = (title, subtitle)
    widget.border_title = title
    widget.border_subtitle = subtitle


def text_key(text: Text | str) -> Hashable:
    """What a ``Text`` draws as (its characters, styles and layout options), to compare."""
    if isinstance(text, str):
        return text
    return (text.plain, str(text.style), tuple(text.spans), text.no_wrap, text.overflow,
            text.justify, text.end)


class KeysFooter(Footer):
    """textual's Footer, composed again only when the keys it shows change. textual composes
    it again (some fifteen widgets mounted and styled) whenever the bindings may have changed:
    on every screen switch and focus change, most often to show the same keys."""

    _shown: tuple[object, ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            shown = tuple((binding.key, binding.action, binding.description,
                           binding.key_display, binding.group, binding.show, enabled, tooltip)
                          for _, binding, enabled, tooltip in screen.active_bindings.values())
            if shown == self._shown:
                return
            self._shown = shown
        super().bindings_changed(screen)


def age_style(seconds: float, slow: float, palette: Palette) -> str:
    if seconds >= slow:
        return f"bold {palette.error}"
    if seconds >= slow / 2:
        return palette.warning
    return ""


def pool_colour(running: int, max_workers: int, palette: Palette) -> str:
    return {"idle": palette.muted, "ok": palette.success, "warning": palette.warning,
            "full": palette.error}[pool_level(running, max_workers)]


@dataclass(frozen=True)
class _Paint:
    """What every line of one paint of a :class:`CellCachingTable` shares: read once per
    paint, where DataTable reads the styles again for every line."""

    width: int
    scroll_x: int
    first_row: int  # row index of the first line below the header
    header_lines: int
    base_style: Style
    even_style: Style
    odd_style: Style
    columns: tuple[tuple[Any, int], ...]  # (column key, width), in order
    remaining: int  # blank cells after the last column, up to the widget's width
    line_length: int  # cells of a line: the columns and the blank after them
    cursor_row: int
    hover_row: int
    #: (hover, cursor) -> the component style of the blank after the last column
    extend: dict[tuple[bool, bool], Style]
    #: changes when anything but a cell's value, row and cursor changes how a cell is drawn
    token: int
    #: what the header line is drawn from
    header: tuple[object, ...]


class CellCachingTable(DataTable[Text]):
    """A DataTable that draws again only the cells that changed, one line at a time.

    DataTable renders every visible cell again after any ``update_cell`` (its caches are keyed
    by an update counter). The console's tables change a cell or two per row per refresh (an
    age, a "finished ago"), so a cell's rendered lines are kept for as long as the cell object
    is the same one, and a one-line cell of one style that fits its column is drawn without
    rich's layout machinery, segment for segment as DataTable would (tests/console pins it).

    A body line (one-line rows, a row cursor, no fixed rows or columns, no row labels: every
    table of the console) is put together from those cells by :meth:`render_line` with the
    styles read once per paint (:class:`_Paint`): DataTable looks up its component styles,
    the widget's style and its background again for every line, which was most of what a
    refresh cost once the ages on screen changed. Anything else is left to DataTable.
    """

    _painting = False  # class level: DataTable may render before __init__ has finished
    _paint: _Paint | None = None
    _tall_rows = False  # a row of more than one line was added: DataTable draws

    #: Rendered cells kept (a few screens' worth).
    CELL_LINES_CACHED = 2000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # before DataTable's __init__, whose reactive settings clear the caches already
        self._cell_lines: LRUCache[tuple[object, ...], tuple[object, list[list[Segment]]]] = \
            LRUCache(self.CELL_LINES_CACHED)
        #: the line path's cells: (row index, column index) -> (value, (cursor, hover, paint
        #: token), segments), valid while the cell object and the state are the same
        self._line_cells: dict[tuple[int, int], tuple[object, tuple[object, ...],
                                                       list[Segment]]] = {}
        self._header_lines: dict[int, tuple[tuple[object, ...], Strip]] = {}
        self._paint_signature: tuple[object, ...] = ()
        self._paint_token = 0
        super().__init__(*args, **kwargs)

    # DataTable clears its own caches when its settings or styles change (theme): ours too
    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._forget_lines()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._forget_lines()

    def _forget_lines(self) -> None:
        self._cell_lines.clear()
        self._line_cells.clear()
        self._header_lines.clear()
        self._paint_signature = ()

    def add_row(self, *cells: Text, height: int | None = 1, key: str | None = None,
                label: Any = None) -> Any:
        if height != 1:
            self._tall_rows = True
        return super().add_row(*cells, height=height, key=key, label=label)

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> list[list[Segment]]:
        # kept while the cell object is the same one (see the class docstring)
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor,
                                        hover)
        try:
            row_key = self._row_locations.get_key(row_index)
            column_key = self._column_locations.get_key(column_index)
            value = self._data[row_key][column_key]  # type: ignore[index]
        except KeyError:
            return super()._render_cell(row_index, column_index, base_style, width, cursor,
                                        hover)
        key = (row_key, column_key, row_index, column_index, base_style, width, cursor, hover,
               self._show_hover_cursor, self._pseudo_class_state, id(value))
        cached = self._cell_lines.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        lines = self._render_plain_cell(value, row_index, column_index, base_style, width,
                                        cursor, hover)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor,
                                         hover)
        self._cell_lines[key] = (value, lines)
        return lines

    def render_lines(self, crop: Region) -> list[Strip]:
        self._painting = True
        try:
            return super().render_lines(crop)
        finally:
            self._painting = False
            self._paint = None

    def render_line(self, y: int) -> Strip:
        if not self._painting:  # outside a paint: DataTable's own way
            return super().render_line(y)
        paint = self._paint
        if paint is None:
            paint = self._paint = self._paint_now()
            if paint is None:
                self._painting = False  # not a table this path draws: DataTable's way
                return super().render_line(y)
        if y < paint.header_lines:
            # the same until a column, the header's style or the geometry changes
            cached = self._header_lines.get(y)
            if cached is not None and cached[0] == paint.header:
                return cached[1]
            strip = super().render_line(y)
            self._header_lines[y] = (paint.header, strip)
            return strip
        return self._render_body_line(paint, paint.first_row + y - paint.header_lines)

    def _paint_now(self) -> _Paint | None:
        """The styles and geometry of this paint, or None when DataTable has to draw."""
        if (self.cursor_type != "row" or self.fixed_rows or self.fixed_columns
                or self._tall_rows or self._row_label_column_width):
            return None
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        header_lines = self.header_height if self.show_header else 0
        base_style = self.rich_style
        if self.zebra_stripes:
            even = self.get_component_styles("datatable--even-row").rich_style
            odd = self.get_component_styles("datatable--odd-row").rich_style
        else:
            even = odd = base_style
        ordered = self.ordered_columns
        columns = tuple((column.key, column.get_render_width(self)) for column in ordered)
        show_cursor, show_hover = self.show_cursor, self._show_hover_cursor
        signature = (base_style, even, odd, columns, show_cursor, show_hover,
                     self._pseudo_class_state, self.cell_padding, self.cursor_foreground_priority,
                     self.cursor_background_priority)
        if signature != self._paint_signature:
            self._paint_signature = signature
            self._paint_token += 1
        extend = {(hover, cursor): self._get_styles_to_render_cell(
            False, False, False, hover, cursor, show_cursor, show_hover, False, False)[0]
            for hover in (False, True) for cursor in (False, True)}
        cursor_row, hover_row = self.cursor_coordinate.row, self.hover_coordinate.row
        header = (self._paint_token, width, scroll_x, header_lines, cursor_row == -1,
                  hover_row == -1, self.get_component_styles("datatable--header").rich_style,
                  tuple((c.label.plain, c.label.style, tuple(c.label.spans), c.label.justify)
                        for c in ordered))
        columns_width = sum(w for _, w in columns)
        remaining = max(0, width - columns_width)
        return _Paint(width=width, scroll_x=scroll_x, first_row=scroll_y,
                      header_lines=header_lines, base_style=base_style, even_style=even,
                      odd_style=odd, columns=columns, remaining=remaining,
                      line_length=columns_width + remaining, cursor_row=cursor_row,
                      hover_row=hover_row, extend=extend, token=self._paint_token,
                      header=header)

    def _render_body_line(self, paint: _Paint, row_index: int) -> Strip:
        """Row ``row_index`` as one line, as DataTable's ``_render_line`` draws it."""
        width = paint.width
        row_key = self._row_locations.get_key(row_index)
        if row_key is None:  # below the last row
            return Strip.blank(width, paint.base_style)
        cursor = row_index == paint.cursor_row
        hover = row_index == paint.hover_row
        row_style = paint.odd_style if row_index % 2 else paint.even_style
        row = self._data[row_key]
        state = (cursor, hover, paint.token)
        cells = self._line_cells
        if len(cells) > 4 * self.CELL_LINES_CACHED:
            cells.clear()
        segments: list[Segment] = []
        for column_index, (column_key, column_width) in enumerate(paint.columns):
            value = row.get(column_key)
            cached = cells.get((row_index, column_index))
            if cached is not None and cached[0] is value and cached[1] == state:
                segments += cached[2]
                continue
            line = self._render_plain_cell(value, row_index, column_index, row_style,
                                           column_width, cursor, hover)
            if line is None:
                line = DataTable._render_cell(self, row_index, column_index, row_style,
                                              column_width, cursor, hover)
            cells[row_index, column_index] = (value, state, line[0])
            segments += line[0]
        extend = row_style + paint.extend[hover, cursor] + Style.from_meta(
            {"row": row_index, "column": 0, "out_of_bounds": True})
        segments.append(Segment(" " * paint.remaining, extend))
        # as DataTable's Strip(line_crop(...)).adjust_cell_length(...).simplify(), but the
        # line's length is known (every cell is drawn to its column's width): one Strip, not
        # three, and no measuring
        x = paint.scroll_x
        length = paint.line_length
        if x:
            segments = line_crop(segments, x, x + width, width)
            length = max(0, length - x)
        if length > width:  # cut at the widget's edge (adjust_cell_length)
            kept: list[Segment] = []
            used = 0
            for segment in segments:
                size = cell_len(segment.text)
                if used + size < width:
                    kept.append(segment)
                    used += size
                else:
                    kept.append(Segment(set_cell_size(segment.text, width - used),
                                        segment.style))
                    break
            segments = kept
        elif length < width:
            segments.append(Segment(" " * (width - length), paint.base_style))
        return Strip(Segment.simplify(segments), width)

    def _render_plain_cell(self, value: object, row_index: int, column_index: int,
                           base_style: Style, width: int, cursor: bool, hover: bool
                           ) -> list[list[Segment]] | None:
        """A one-line cell of one style that fits its column, as DataTable draws it (padding,
        row and cursor styles, mouse meta) without rich's layout machinery; None for anything
        else."""
        if (not isinstance(value, Text) or value.spans or "\n" in value.plain
                or value.justify not in (None, "default", "left") or self.fixed_rows
                or self.fixed_columns):
            return None
        pad = self.cell_padding
        room = width - 2 * pad
        length = cell_len(value.plain)
        if length > room or room < 0:
            return None
        component, post = self._get_styles_to_render_cell(
            False, False, False, hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
        pre = base_style + Style.from_meta({"row": row_index, "column": column_index})
        pre += component
        blank = pre + post if post else pre
        text_style = self.app.console.get_style(value.style) if value.style else None
        styled = pre + text_style if text_style else pre
        if post:
            styled += post
        line = []
        if pad:
            line.append(Segment(" " * pad, blank))
        if value.plain:
            line.append(Segment(value.plain, styled))
        if room - length + pad:
            line.append(Segment(" " * (room - length + pad), blank))
        return [line]


class KeyedTable(CellCachingTable):
    """A DataTable of keyed rows brought in line with a ``{key: cells}`` mapping in place: rows
    never cleared, changed cells updated, one repaint per batch, the cursor staying on its row.
    Subclasses set their columns with :meth:`set_columns` and call :meth:`apply`."""

    _batching = False  # class level: refresh() runs before __init__ has finished
    _batched_refresh = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._rows: dict[str, tuple[Text, ...]] = {}
        self._column_keys: list[str] = []
        #: (column key, descending) the rows are kept sorted by; None: insertion order
        self.order: tuple[str, bool] | None = None

    def set_columns(self, columns: Sequence[tuple[str, str]],
                    widths: dict[str, int] | None = None) -> None:
        """(Re)define the columns; the rows are rebuilt at the next :meth:`apply`."""
        keys = [k for k, _ in columns]
        if keys == self._column_keys:
            return
        self.clear(columns=True)
        self._rows.clear()
        self._column_keys = keys
        for key, label in columns:
            self.add_column(label, key=key, width=(widths or {}).get(key))

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except CellDoesNotExist:
            return None

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        if self._batching and not (layout or recompose):
            self._batched_refresh = True  # update_cell repaints the table each call
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def apply(self, wanted: dict[str, tuple[Text, ...]]) -> None:
        self._batching = True
        try:
            following, old_index = self.current_key(), self.cursor_row
            for key in [k for k in self._rows if k not in wanted]:
                self.remove_row(key)
                del self._rows[key]
            for key, cells in wanted.items():
                previous = self._rows.get(key)
                if previous is None:
                    self.add_row(*cells, key=key)
                else:
                    for column, old, new in zip(self._column_keys, previous, cells, strict=True):
                        if old is not new and (old != new or old.style != new.style):
                            self.update_cell(key, column, new)
                self._rows[key] = cells
            self.resort()
            if following is not None and following in self._rows:
                index = self.get_row_index(following)
                if index != self.cursor_row:
                    self.move_cursor(row=index, scroll=False)
            elif self.row_count:
                self.move_cursor(row=min(old_index, self.row_count - 1), scroll=False)
        finally:
            self._batching = False
        if self._batched_refresh:
            self._batched_refresh = False
            self.refresh()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A header click sorts by that column; clicking it again reverses."""
        event.stop()
        column = str(event.column_key.value)
        self.order = (column, not self.order[1] if self.order and self.order[0] == column
                      else False)
        self.resort()

    def resort(self) -> None:
        if not self.row_count or self.order is None:
            return
        column, descending = self.order
        following = self.current_key()
        self.sort(column, key=sort_key, reverse=descending)
        if following is not None and following in self._rows:
            self.move_cursor(row=self.get_row_index(following), scroll=False)

    def keys(self) -> list[str]:
        return [str(row.key.value) for row in self.ordered_rows]


def sort_key(cell: Any) -> Any:
    """What a column sorts by: a :class:`SortText`'s ``sort_value``, else its text."""
    return getattr(cell, "sort_value", None) if getattr(cell, "sort_value", None) is not None \
        else str(cell).lower()


def sortable(text: Text, sort: Any) -> SortText:
    """``text`` as a cell that sorts by ``sort``."""
    out = SortText(text.plain, style=text.style, no_wrap=True, overflow="ellipsis",
                   spans=list(text.spans))
    out.sort_value = sort
    return out


__all__ = [
    "CellCachingTable",
    "KeyedTable",
    "sortable",
    "sort_key", "update_static", "text_key", "set_border", "KeysFooter", "Palette", "SortText",
    "cell",
    "age_style", "pool_colour", "format_age", "clip"]
