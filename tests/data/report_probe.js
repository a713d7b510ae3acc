// Injected by tests/test_report_pictures.py into a COPY of REPORT.html (the report itself has no script):
// what Chromium laid out and painted of the two pictures, written into the DOM for --dump-dom.
(async () => {
  const result = {resources: performance.getEntriesByType("resource").map(e => e.name), pictures: []};
  // Scrolled into view: its box lies inside its picture's, and the topmost element at `point` is part of it.
  const seen = (svg, element, box, point) => {
    const frame = svg.getBoundingClientRect();
    return {
      inside: box.width > 0 && box.height > 0 && box.left >= frame.left - 1 && box.right <= frame.right + 1
        && box.top >= frame.top - 1 && box.bottom <= frame.bottom + 1,
      hit: element.contains(document.elementFromPoint(point.x, point.y)),
    };
  };
  for (const svg of document.querySelectorAll("figure.picture > svg")) {
    const frame = svg.getBoundingClientRect();
    const picture = {id: svg.parentElement.id, width: frame.width, height: frame.height, marks: [], cells: [],
                     colours: {}};
    for (const a of svg.querySelectorAll("a.mark")) {
      a.scrollIntoView({block: "center"});
      const path = a.querySelector("path");
      const anchor = new DOMPoint(Number(a.dataset.x), Number(a.dataset.y)).matrixTransform(svg.getScreenCTM());
      const shape = path.getBBox();  // in the picture's own units: the same for each mark of a severity
      picture.marks.push({pattern: a.dataset.pattern, severity: a.dataset.severity, pack: a.dataset.pack,
        title: a.querySelector("title").textContent, fill: getComputedStyle(path).fill,
        shape: [Math.round(shape.width * 10) / 10, Math.round(shape.height * 10) / 10],
        x: anchor.x - svg.getBoundingClientRect().left, ...seen(svg, a, path.getBoundingClientRect(), anchor)});
    }
    for (const g of svg.querySelectorAll("g.cell")) {
      g.scrollIntoView({block: "center"});
      const rect = g.querySelector("rect");
      const box = rect.getBoundingClientRect();
      // the upper left quarter: the cell's own colour, clear of a partial cell's half and a warning's glyph
      const half = g.querySelector("path");
      picture.cells.push({entry: g.dataset.entry, target: g.dataset.target, state: g.dataset.state,
        title: g.querySelector("title").textContent, fill: getComputedStyle(rect).fill,
        half: half ? getComputedStyle(half).fill : "", glyph: g.querySelector("text")?.textContent || "",
        ...seen(svg, g, box, {x: box.left + box.width / 4, y: box.top + box.height / 4})});
    }
    // the picture rasterized by Chromium, without its legend: which colours the marks and cells painted
    const clone = svg.cloneNode(true);
    clone.querySelectorAll(".legend").forEach(legend => legend.remove());
    const image = new Image();
    image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(new XMLSerializer().serializeToString(clone));
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = svg.viewBox.baseVal.width;
    canvas.height = svg.viewBox.baseVal.height;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 255) {
        const key = `rgb(${data[i]}, ${data[i + 1]}, ${data[i + 2]})`;
        picture.colours[key] = (picture.colours[key] || 0) + 1;
      }
    }
    result.pictures.push(picture);
  }
  const out = document.createElement("pre");
  out.id = "probe-result";
  out.textContent = JSON.stringify(result);
  document.body.append(out);
})();
