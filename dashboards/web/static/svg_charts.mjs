// Horizontal bar charts drawn as SVG by hand: no chart library, nothing loaded from a CDN.
// `barChartLayout` is pure geometry (unit-tested with node --test); `renderBarChart` draws it.

const SVG = "http://www.w3.org/2000/svg";

/** The smallest 1, 2 or 5 times a power of ten that is >= value (axis maximum). */
export function niceMax(value) {
  if (!Number.isFinite(value) || value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/**
 * Geometry of a bar chart. `items`: [{key, label, valueLabel, segments: [{value, tone, title}]}],
 * segments drawn from 0 on top of each other (the widest first), so p50 sits inside p95.
 * `max`: the axis maximum (default: niceMax of the widest segment).
 */
export function barChartLayout(items, { width = 640, rowHeight = 26, labelWidth = 220, valueWidth = 150, max } = {}) {
  const widest = Math.max(0, ...items.flatMap((item) => item.segments.map((s) => s.value ?? 0)));
  const axisMax = max ?? niceMax(widest);
  const plotWidth = Math.max(10, width - labelWidth - valueWidth);
  const bars = items.map((item, row) => {
    const y = row * rowHeight;
    const segments = item.segments
      .filter((s) => Number.isFinite(s.value) && s.value >= 0)
      .map((s) => ({ ...s, x: labelWidth, width: Math.max(1, (Math.min(s.value, axisMax) / axisMax) * plotWidth) }))
      .sort((a, b) => b.width - a.width);
    return { key: item.key, label: item.label, valueLabel: item.valueLabel, y, height: rowHeight - 6, segments };
  });
  return { width, height: Math.max(rowHeight, items.length * rowHeight), labelWidth, plotWidth, axisMax, bars };
}

function svgElement(doc, tag, attributes, text) {
  const node = doc.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Replace `container`'s content with the chart (or with `emptyText` when there are no items). */
export function renderBarChart(container, name, layout, emptyText) {
  const doc = container.ownerDocument;
  container.replaceChildren();
  if (layout.bars.length === 0) {
    if (!emptyText) return null;
    const note = doc.createElement("p");
    note.className = "empty";
    note.textContent = emptyText;
    container.append(note);
    return null;
  }
  const svg = svgElement(doc, "svg", {
    viewBox: `0 0 ${layout.width} ${layout.height}`,
    class: "chart",
    role: "img",
    "aria-label": name,
    "data-chart": name,
    "data-bars": layout.bars.length,
  });
  for (const bar of layout.bars) {
    const row = svgElement(doc, "g", { class: "chart-row", "data-key": bar.key });
    row.append(svgElement(doc, "text", { class: "chart-label", x: layout.labelWidth - 8, y: bar.y + bar.height - 5 }, bar.label));
    row.append(svgElement(doc, "rect", { class: "chart-track", x: layout.labelWidth, y: bar.y, width: layout.plotWidth, height: bar.height }));
    for (const segment of bar.segments) {
      const rect = svgElement(doc, "rect", {
        class: `bar tone-${segment.tone}`, x: segment.x, y: bar.y, width: segment.width.toFixed(1), height: bar.height,
      });
      rect.append(svgElement(doc, "title", {}, segment.title ?? bar.valueLabel));
      row.append(rect);
    }
    row.append(svgElement(doc, "text", {
      class: "chart-value", x: layout.labelWidth + layout.plotWidth + 8, y: bar.y + bar.height - 5,
    }, bar.valueLabel));
    svg.append(row);
  }
  container.append(svg);
  return svg;
}
