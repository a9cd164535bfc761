/* vidclust report: the explorable map of the videos, search, and the paged member list of every
   cluster. It reads window.VIDCLUST_REPORT_DATA, which points.js sets (its layout: the docstring
   of vidclust/reporting/explorer.py). Everything that comes from the data goes into the page as text
   (textContent) or as a property (href, src), never as HTML. No network: the page opens from disk.

   The map: every video is a dot coloured by its cluster. Dots are added up per pixel (colour
   averaged, opacity growing with the number of dots there), so 100,000 videos draw in
   milliseconds and dense places read as dense; the centres are marked and labelled (the larger
   clusters first; a label that would cover another is shortened to the cluster id, or left out
   until you zoom in). Drag to pan, wheel or the buttons to zoom; hover a dot for its caption,
   thumbnail and cluster; click it to open its cluster. */
(function () {
  "use strict";

  var LIST_MAX = 100;          // search results listed (all matches are highlighted on the map)
  var RINGS_MAX = 300;         // matches ringed on the map when there are no more than this
  var MATCHES_DRAWN_MAX = 50000;  // matches drawn over the faded dots (more: only in the dots' colours)
  var HOVER_PX = 7;            // how near the pointer a dot must be to be hovered
  var NOISE_ID = -1;

  window.addEventListener("load", checkImages);

  // Counts the report's images that loaded (tests and users see whether files moved).
  function checkImages() {
    var imgs = document.querySelectorAll("img:not(.tooltip-image)"), ok = 0;
    for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
    var el = document.getElementById("image-check");
    if (!el) return;
    el.setAttribute("data-loaded", String(ok));
    el.setAttribute("data-total", String(imgs.length));
    el.textContent = ok === imgs.length ? "" :
      (imgs.length - ok) + " of " + imgs.length + " images did not load (were the report's files moved?)";
  }

  var D = window.VIDCLUST_REPORT_DATA;
  if (!D) return;

  // ------------------------------------------------------------------ the data
  var N = D.n;
  var clusterOf = new Int32Array(N);
  var colors = [];
  var clusterIndexById = {};
  D.clusters.forEach(function (c, ci) {
    for (var i = c.start; i < c.start + c.count; i++) clusterOf[i] = ci;
    colors.push(hexToRgb(c.color));
    clusterIndexById[c.id] = ci;
  });
  var thumbOf = {};
  D.thumbIndex.forEach(function (row, k) { thumbOf[row] = D.thumbImage[k]; });

  function hexToRgb(hex) {
    var v = parseInt(String(hex).slice(1), 16);
    return isNaN(v) ? [128, 128, 128] : [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }

  function count(n, one, many) { return n.toLocaleString("en") + " " + (n === 1 ? one : many); }

  function clusterName(ci, nKeywords) {
    var c = D.clusters[ci];
    if (c.id === NOISE_ID) return "noise";
    var kws = c.keywords.slice(0, nKeywords);
    return "cluster " + c.id + (kws.length ? ": " + kws.join(", ") : "");
  }

  function fileName(row) {
    var f = D.files[row];
    return typeof f === "number" ? D.ids[row] + D.exts[f] : f;
  }

  function videoHref(row) {
    var d = D.dir[row];
    if (d < 0) return null;
    var base = D.dirs[d];
    if (!/^(https?:|file:|[^:]*$)/i.test(base)) return null;  // relative, file: or http(s): only
    return base + encodeURIComponent(fileName(row));
  }

  function make(tag, className, text) {
    var el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined && text !== null) el.textContent = String(text);
    return el;
  }

  function swatch(ci) {
    var s = make("span", "swatch");
    s.style.background = D.clusters[ci].color;
    return s;
  }

  function sectionOf(ci) { return document.getElementById("cluster-" + D.clusters[ci].id); }

  // ------------------------------------------------------------------ member lists, paged
  var memberLists = {};

  function MemberList(ci, box) {
    var c = D.clusters[ci], pageSize = Math.max(1, D.pageSize);
    var pages = Math.max(1, Math.ceil(c.count / pageSize));
    box.textContent = "";
    box.appendChild(make("h4", null, "All " + count(c.count, "video", "videos") +
                         (c.id === NOISE_ID ? "" : ", nearest the centre first")));
    var table = make("table", "members-table");
    var head = make("tr");
    ["#", "video", "caption", "file"].forEach(function (h) { head.appendChild(make("th", null, h)); });
    table.appendChild(head);
    var body = make("tbody");
    table.appendChild(body);
    box.appendChild(table);
    var pager = make("div", "pager");
    var prev = make("button", "prev", "\u2039 previous"), next = make("button", "next", "next \u203a");
    prev.type = next.type = "button";
    var where = make("span", "where");
    pager.appendChild(prev); pager.appendChild(where); pager.appendChild(next);
    if (pages > 1) box.appendChild(pager);
    var page = 0;

    function show(p, markRow) {
      page = Math.min(Math.max(0, p), pages - 1);
      body.textContent = "";
      var first = c.start + page * pageSize, last = Math.min(c.start + c.count, first + pageSize);
      for (var row = first; row < last; row++) body.appendChild(memberRow(row, row - c.start + 1, row === markRow));
      where.textContent = "page " + (page + 1) + " of " + pages + " (videos " + (first - c.start + 1) +
        "\u2013" + (last - c.start) + " of " + c.count.toLocaleString("en") + ")";
      prev.disabled = page === 0;
      next.disabled = page === pages - 1;
      box.setAttribute("data-page", String(page + 1));
    }
    prev.addEventListener("click", function () { show(page - 1); });
    next.addEventListener("click", function () { show(page + 1); });
    show(0);
    this.show = show;
    this.pageOf = function (row) { return Math.floor((row - c.start) / pageSize); };
  }

  function memberRow(row, rank, marked) {
    var tr = make("tr", marked ? "marked" : null);
    tr.setAttribute("data-video", D.ids[row]);
    tr.appendChild(make("td", "num", rank));
    var idCell = make("td");
    if (map && D.x[row] >= 0) {
      var b = make("button", "linklike", D.ids[row]);
      b.type = "button";
      b.title = "show on the map";
      b.addEventListener("click", function () { map.showVideo(row); });
      idCell.appendChild(b);
    } else {
      idCell.textContent = D.ids[row];
    }
    tr.appendChild(idCell);
    tr.appendChild(make("td", "caption", D.captions[row]));
    var fileCell = make("td", "file");
    var href = videoHref(row);
    if (href) {
      var a = make("a", null, fileName(row));
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener";
      fileCell.appendChild(a);
    } else {
      fileCell.textContent = fileName(row);
    }
    tr.appendChild(fileCell);
    return tr;
  }

  function memberList(ci) {
    if (!memberLists[ci]) {
      var box = document.querySelector('.members[data-cluster="' + D.clusters[ci].id + '"]');
      if (!box) return null;
      memberLists[ci] = new MemberList(ci, box);
    }
    return memberLists[ci];
  }

  var openedSection = null;

  function openCluster(ci, row) {
    var list = memberList(ci);
    if (list) list.show(row === undefined ? 0 : list.pageOf(row), row);
    var section = sectionOf(ci);
    if (!section) return;
    if (openedSection) openedSection.classList.remove("opened");
    section.classList.add("opened");
    openedSection = section;
    var hash = "#" + section.id;
    if (location.hash !== hash) location.hash = hash; else section.scrollIntoView();
    var marked = row === undefined ? null : section.querySelector("tr.marked");
    if (marked) marked.scrollIntoView({block: "center"});  // the video clicked, in its list
  }

  // The lists are made when their section comes near the screen (or is opened).
  function setUpMemberLists() {
    var boxes = document.querySelectorAll(".members[data-cluster]");
    var byBox = function (box) { return clusterIndexById[box.getAttribute("data-cluster")]; };
    if (!("IntersectionObserver" in window)) {
      Array.prototype.forEach.call(boxes, function (box) { if (byBox(box) !== undefined) memberList(byBox(box)); });
      return;
    }
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (!e.isIntersecting) return;
        seen.unobserve(e.target);
        if (byBox(e.target) !== undefined) memberList(byBox(e.target));
      });
    }, {rootMargin: "800px"});
    Array.prototype.forEach.call(boxes, function (box) { seen.observe(box); });
  }

  // ------------------------------------------------------------------ the map
  var map = null;

  function VideoMap(pane) {
    var canvas = pane.querySelector("canvas");
    var ctx = canvas.getContext("2d");
    var tooltip = document.getElementById("map-tooltip");
    var tipImage = tooltip.querySelector(".tooltip-image");
    var tipCaption = tooltip.querySelector(".tooltip-caption");
    var tipMeta = tooltip.querySelector(".tooltip-meta");
    var tipCluster = tooltip.querySelector(".tooltip-cluster");
    var status = document.getElementById("map-status");
    var X = D.x, Y = D.y, EW = Math.max(1, D.extent[0]), EH = Math.max(1, D.extent[1]);
    var onMap = [];
    for (var i = 0; i < N; i++) if (X[i] >= 0) onMap.push(i);
    onMap = Int32Array.from(onMap);
    var self = this;
    var view = {s: 1, ox: 0, oy: 0};   // screen x = ox + x*s, screen y = oy + (EH - y)*s (CSS pixels)
    var cssW = 0, cssH = 0, dpr = 1;
    var base = null, acc = null, dirty = true;
    var match = null, matchCount = 0, matchRows = [], dotRadius = 1;
    var hovered = -1, selected = -1;
    this.renderMs = 0;

    // a grid over the map for finding the dot under the pointer
    var G = Math.max(1, Math.min(512, Math.ceil(Math.sqrt(onMap.length / 4))));
    var cellSize = Math.max(EW, EH) / G + 1e-9;
    var cellStart = new Int32Array(G * G + 1), cellRows = new Int32Array(onMap.length);
    (function buildGrid() {
      var cellOf = new Int32Array(onMap.length);
      for (var k = 0; k < onMap.length; k++) {
        var r = onMap[k];
        var c = Math.min(G - 1, Math.floor(Y[r] / cellSize)) * G + Math.min(G - 1, Math.floor(X[r] / cellSize));
        cellOf[k] = c;
        cellStart[c + 1]++;
      }
      for (var c = 0; c < G * G; c++) cellStart[c + 1] += cellStart[c];
      var fill = cellStart.slice(0, G * G);
      for (k = 0; k < onMap.length; k++) cellRows[fill[cellOf[k]]++] = onMap[k];
    })();

    function fit() {
      var pad = 24;
      view.s = Math.min((cssW - 2 * pad) / EW, (cssH - 2 * pad) / EH);
      view.ox = (cssW - EW * view.s) / 2;
      view.oy = (cssH - EH * view.s) / 2;
    }
    var fitScale = 1;

    function resize() {
      var rect = canvas.getBoundingClientRect();
      var w = Math.max(200, Math.round(rect.width)), h = Math.max(200, Math.round(rect.height));
      var first = cssW === 0;
      if (!first) {  // keep the centre of the view where it was
        var cx = (cssW / 2 - view.ox) / view.s, cy = (cssH / 2 - view.oy) / view.s;
      }
      cssW = w; cssH = h;
      dpr = Math.min(2, window.devicePixelRatio || 1);
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
      var zoom = first ? 1 : view.s / fitScale;
      fit();
      fitScale = view.s;
      if (!first) {
        view.s = fitScale * zoom;
        view.ox = cssW / 2 - cx * view.s;
        view.oy = cssH / 2 - cy * view.s;
      }
      dirty = true;
      draw();
    }

    function toScreen(row) { return [view.ox + X[row] * view.s, view.oy + (EH - Y[row]) * view.s]; }

    // ---- the dots, added up per pixel
    function drawDots() {
      var t0 = performance.now();
      var W = canvas.width, H = canvas.height, n = W * H;
      if (!acc || acc.length !== n * 4) { acc = new Float32Array(n * 4); base = ctx.createImageData(W, H); }
      else acc.fill(0);
      var s = view.s * dpr, ox = view.ox * dpr, oy = (view.oy + EH * view.s) * dpr;
      var zoom = view.s / fitScale;
      // dot radius (device pixels) from the spacing the dots would have if spread evenly
      var spacing = Math.sqrt(cssW * cssH / Math.max(1, onMap.length)) * Math.sqrt(zoom);
      var r = Math.max(0.5, Math.min(5, 0.3 * spacing)) * dpr;
      var ri = Math.floor(r), offsets = [];
      dotRadius = r / dpr;
      for (var dy = -ri; dy <= ri; dy++) for (var dx = -ri; dx <= ri; dx++) {
        if (dx * dx + dy * dy <= r * r + 0.5) offsets.push(dy * W + dx, dx, dy);
      }
      var visible = 0;
      for (var k = 0; k < onMap.length; k++) {
        var row = onMap[k];
        var px = Math.round(ox + X[row] * s), py = Math.round(oy - Y[row] * s);
        if (px < -ri || py < -ri || px >= W + ri || py >= H + ri) continue;
        visible++;
        var faded = match !== null && !match[row];
        var col = faded ? FADED : colors[clusterOf[row]], w = faded ? 0.5 : 1;
        var cr = col[0] * w, cg = col[1] * w, cb = col[2] * w, at = py * W + px;
        for (var o = 0; o < offsets.length; o += 3) {
          var qx = px + offsets[o + 1], qy = py + offsets[o + 2];
          if (qx < 0 || qy < 0 || qx >= W || qy >= H) continue;
          var p = (at + offsets[o]) * 4;
          acc[p] += cr; acc[p + 1] += cg; acc[p + 2] += cb; acc[p + 3] += w;
        }
      }
      // opacity grows with the logarithm of the dots on a pixel: from `single` for one dot to
      // opaque at the 90th percentile of the occupied pixels, so dense places show their inner
      // density; `single` is high where dots rarely overlap and lower the more they pile up
      var hist = new Uint32Array(257), occupied = 0;
      for (var q = 3; q < acc.length; q += 4) {
        if (acc[q] > 0) { hist[Math.min(256, Math.ceil(acc[q]))]++; occupied++; }
      }
      var full = 1, seen = 0;
      for (full = 1; full < 256; full++) { seen += hist[full]; if (seen >= 0.9 * occupied) break; }
      var logFull = Math.log(Math.max(2, full)), out = base.data;
      var single = Math.max(0.25, Math.min(0.9, 0.9 - 0.12 * Math.log(full)));
      for (var p = 0, j = 0; p < n; p++, j += 4) {
        var c = acc[j + 3];
        if (c === 0) { out[j] = out[j + 1] = out[j + 2] = 255; out[j + 3] = 255; continue; }
        var alpha = Math.max(0.08, Math.min(1, single + (1 - single) * Math.log(c) / logFull));
        var keep = 255 * (1 - alpha), mix = alpha / c;
        out[j] = keep + acc[j] * mix; out[j + 1] = keep + acc[j + 1] * mix; out[j + 2] = keep + acc[j + 2] * mix;
        out[j + 3] = 255;
      }
      self.visible = visible;
      self.density = {full: full, single: single};
      self.renderMs = performance.now() - t0;
    }
    var FADED = [205, 205, 205];

    // ---- what is drawn over the dots: matches, centres and their labels, the hovered dot
    function drawOverlay() {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.putImageData(base, 0, 0);
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      if (match !== null && matchCount <= MATCHES_DRAWN_MAX) drawMatches();
      if (match !== null && matchCount <= RINGS_MAX) {
        ctx.lineWidth = 1.5;
        ctx.strokeStyle = "#111";
        ctx.beginPath();
        matchRows.forEach(function (row) {
          if (X[row] < 0) return;
          var p = toScreen(row);
          ctx.moveTo(p[0] + 6, p[1]);
          ctx.arc(p[0], p[1], 6, 0, 2 * Math.PI);
        });
        ctx.stroke();
      }
      drawCentres();
      [selected, hovered].forEach(function (row, k) {
        if (row < 0 || X[row] < 0) return;
        var p = toScreen(row);
        ctx.beginPath();
        ctx.arc(p[0], p[1], k === 0 ? 9 : 7, 0, 2 * Math.PI);
        ctx.lineWidth = 3; ctx.strokeStyle = "#fff"; ctx.stroke();
        ctx.lineWidth = 1.5; ctx.strokeStyle = "#000"; ctx.stroke();
      });
    }

    // the matching dots in their cluster's colour, over the faded others
    function drawMatches() {
      var rad = Math.max(2, dotRadius);
      D.clusters.forEach(function (c) {
        ctx.beginPath();
        for (var row = c.start; row < c.start + c.count; row++) {
          if (!match[row] || X[row] < 0) continue;
          var p = toScreen(row);
          if (p[0] < -rad || p[1] < -rad || p[0] > cssW + rad || p[1] > cssH + rad) continue;
          ctx.rect(p[0] - rad, p[1] - rad, 2 * rad, 2 * rad);
        }
        ctx.fillStyle = c.color;
        ctx.fill();
      });
    }

    function drawCentres() {
      var placed = [], centres = [];
      D.clusters.forEach(function (c, ci) {
        if (c.id === NOISE_ID || c.cx < 0) return;
        var x = view.ox + c.cx * view.s, y = view.oy + (EH - c.cy) * view.s;
        if (x < -40 || y < -40 || x > cssW + 40 || y > cssH + 40) return;
        centres.push([ci, x, y]);
        placed.push([x - 6, y - 6, x + 6, y + 6]);  // labels keep off every centre's mark
      });
      centres.forEach(function (m) {
        ctx.beginPath();
        ctx.arc(m[1], m[2], 5, 0, 2 * Math.PI);  // a ring, so the dots of a tight cluster show inside it
        ctx.lineWidth = 3; ctx.strokeStyle = "rgba(255,255,255,0.85)"; ctx.stroke();
        ctx.lineWidth = 1.2; ctx.strokeStyle = "#222"; ctx.stroke();
      });
      ctx.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
      ctx.textBaseline = "middle";
      var byCount = centres.slice().sort(function (a, b) { return D.clusters[b[0]].count - D.clusters[a[0]].count; });
      var spots = [[0, -15], [0, 15], [1, 0], [-1, 0], [1, -15], [-1, -15], [1, 15], [-1, 15], [0, -31], [0, 31]];
      byCount.forEach(function (m) {
        var ci = m[0], texts = [clusterName(ci, 2).replace(/^cluster /, ""), String(D.clusters[ci].id)];
        for (var t = 0; t < texts.length; t++) {
          var text = texts[t].length > 34 ? texts[t].slice(0, 33) + "\u2026" : texts[t];
          var w = ctx.measureText(text).width + 8, h = 16, best = null, bestCost = Infinity;
          for (var s = 0; s < spots.length; s++) {  // the free spot that hides the fewest dots
            var cx = m[1] + spots[s][0] * (w / 2 + 8), cy = m[2] + spots[s][1];
            var box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2];
            if (box[0] < 2 || box[1] < 2 || box[2] > cssW - 2 || box[3] > cssH - 2) continue;
            if (placed.some(function (b) { return box[0] < b[2] && b[0] < box[2] && box[1] < b[3] && b[1] < box[3]; })) continue;
            var cost = dotsUnder(box) + 0.5 * s;
            if (cost < bestCost) { bestCost = cost; best = box; }
          }
          if (!best) continue;
          placed.push(best);
          var nx = Math.max(best[0], Math.min(m[1], best[2])), ny = Math.max(best[1], Math.min(m[2], best[3]));
          if ((nx - m[1]) * (nx - m[1]) + (ny - m[2]) * (ny - m[2]) > 64) {  // a thin line to its centre
            ctx.beginPath(); ctx.moveTo(m[1], m[2]); ctx.lineTo(nx, ny);
            ctx.lineWidth = 1; ctx.strokeStyle = "rgba(40,40,40,0.7)"; ctx.stroke();
          }
          ctx.fillStyle = "rgba(255,255,255,0.88)";
          ctx.fillRect(best[0], best[1], w, h);
          ctx.lineWidth = 1.5; ctx.strokeStyle = D.clusters[ci].color;
          ctx.strokeRect(best[0], best[1], w, h);
          ctx.fillStyle = "#111";
          ctx.fillText(text, best[0] + 4, (best[1] + best[3]) / 2 + 0.5);
          return;
        }
      });
    }

    // how many dots lie under a box (CSS pixels), from the per-pixel sums, sampled every 3 pixels
    function dotsUnder(box) {
      var W = canvas.width, H = canvas.height, total = 0;
      for (var y = box[1]; y < box[3]; y += 3) for (var x = box[0]; x < box[2]; x += 3) {
        var px = Math.floor(x * dpr), py = Math.floor(y * dpr);
        if (px >= 0 && py >= 0 && px < W && py < H) total += acc[(py * W + px) * 4 + 3];
      }
      return total;
    }

    var frame = 0;
    function draw() {
      if (frame) return;
      frame = requestAnimationFrame(function () {
        frame = 0;
        if (dirty) { drawDots(); dirty = false; }
        drawOverlay();
        status.textContent = count(onMap.length, "video", "videos") + " on the map" +
          (onMap.length < N ? " (" + (N - onMap.length).toLocaleString("en") + " without a position)" : "") +
          (match !== null ? " \u00b7 " + count(matchCount, "match", "matches") + " highlighted" : "") +
          " \u00b7 zoom " + (view.s / fitScale).toFixed(1) + "\u00d7";
      });
    }
    function redraw() { dirty = true; draw(); }

    // ---- the dot under the pointer
    function nearest(sx, sy) {
      var x = (sx - view.ox) / view.s, y = EH - (sy - view.oy) / view.s, rad = HOVER_PX / view.s;
      var c0 = Math.max(0, Math.floor((x - rad) / cellSize)), c1 = Math.min(G - 1, Math.floor((x + rad) / cellSize));
      var r0 = Math.max(0, Math.floor((y - rad) / cellSize)), r1 = Math.min(G - 1, Math.floor((y + rad) / cellSize));
      var best = -1, bestD = rad * rad;
      for (var gy = r0; gy <= r1; gy++) for (var gx = c0; gx <= c1; gx++) {
        var cell = gy * G + gx;
        for (var k = cellStart[cell]; k < cellStart[cell + 1]; k++) {
          var row = cellRows[k];
          if (match !== null && !match[row]) continue;  // while searching, only matches answer
          var ddx = X[row] - x, ddy = Y[row] - y, d = ddx * ddx + ddy * ddy;
          if (d <= bestD) { bestD = d; best = row; }
        }
      }
      return best;
    }

    function showTooltip(row, sx, sy) {
      if (row < 0) { tooltip.hidden = true; return; }
      var img = thumbOf[row];
      tipImage.hidden = !img;
      if (img) tipImage.src = img; else tipImage.removeAttribute("src");
      tipCaption.textContent = D.captions[row] || "(no caption)";
      tipMeta.textContent = D.ids[row] + (fileName(row) ? " \u00b7 " + fileName(row) : "");
      tipCluster.textContent = "";
      tipCluster.appendChild(swatch(clusterOf[row]));
      tipCluster.appendChild(document.createTextNode(clusterName(clusterOf[row], 3) + " \u2014 click to open it"));
      tooltip.hidden = false;
      var w = tooltip.offsetWidth, h = tooltip.offsetHeight;
      var left = sx + 14 + w > cssW ? sx - 14 - w : sx + 14, top = sy + 14 + h > cssH ? sy - 14 - h : sy + 14;
      tooltip.style.left = Math.max(0, left) + "px";
      tooltip.style.top = Math.max(0, top) + "px";
    }

    function setHovered(row, sx, sy) {
      if (row !== hovered) { hovered = row; draw(); }
      showTooltip(row, sx, sy);
      canvas.style.cursor = row >= 0 ? "pointer" : "grab";
    }

    // ---- pointer: drag pans, a click opens the cluster of the dot under it
    var drag = null;
    function local(e) { var r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
    canvas.addEventListener("pointerdown", function (e) {
      var p = local(e);
      drag = {x: p[0], y: p[1], ox: view.ox, oy: view.oy, moved: false, id: e.pointerId};
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", function (e) {
      var p = local(e);
      if (drag) {
        var dx = p[0] - drag.x, dy = p[1] - drag.y;
        if (drag.moved || dx * dx + dy * dy > 16) {
          drag.moved = true;
          view.ox = drag.ox + dx; view.oy = drag.oy + dy;
          tooltip.hidden = true;
          redraw();
          return;
        }
      }
      setHovered(nearest(p[0], p[1]), p[0], p[1]);
    });
    canvas.addEventListener("pointerup", function (e) {
      var p = local(e), wasDrag = drag && drag.moved;
      if (drag) canvas.releasePointerCapture(drag.id);
      drag = null;
      if (wasDrag) return;
      var row = nearest(p[0], p[1]);
      if (row >= 0) { selected = row; openCluster(clusterOf[row], row); draw(); return; }
      var ci = centreAt(p[0], p[1]);
      if (ci >= 0) openCluster(ci);
    });
    canvas.addEventListener("pointerleave", function () { if (!drag) setHovered(-1, 0, 0); });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var p = local(e);
      zoomAt(p[0], p[1], Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)));
    }, {passive: false});

    function centreAt(sx, sy) {
      var best = -1, bestD = 100;
      D.clusters.forEach(function (c, ci) {
        if (c.id === NOISE_ID || c.cx < 0) return;
        var dx = view.ox + c.cx * view.s - sx, dy = view.oy + (EH - c.cy) * view.s - sy;
        if (dx * dx + dy * dy < bestD) { bestD = dx * dx + dy * dy; best = ci; }
      });
      return best;
    }

    function zoomAt(sx, sy, f) {
      var zoom = view.s * f / fitScale;
      if (zoom < 0.5 || zoom > 200) return;
      view.ox = sx - (sx - view.ox) * f;
      view.oy = sy - (sy - view.oy) * f;
      view.s *= f;
      tooltip.hidden = true;
      redraw();
    }

    document.getElementById("zoom-in").addEventListener("click", function () { zoomAt(cssW / 2, cssH / 2, 1.6); });
    document.getElementById("zoom-out").addEventListener("click", function () { zoomAt(cssW / 2, cssH / 2, 1 / 1.6); });
    document.getElementById("reset-view").addEventListener("click", function () { fit(); selected = -1; redraw(); });
    window.addEventListener("resize", resize);

    // ---- what the search and the member lists ask of the map
    this.setMatches = function (m, n, rows) { match = m; matchCount = n; matchRows = rows; hovered = -1; redraw(); };

    this.showVideo = function (row) {
      document.getElementById("map").scrollIntoView();
      selected = row;
      var zoom = Math.max(4, view.s / fitScale);
      view.s = fitScale * zoom;
      view.ox = cssW / 2 - X[row] * view.s;
      view.oy = cssH / 2 - (EH - Y[row]) * view.s;
      redraw();
      var p = toScreen(row);
      showTooltip(row, p[0], p[1]);
    };

    // where a video's dot is on the screen (client coordinates), or null: for tests and tools
    this.screenPositionOf = function (videoId) {
      var row = D.ids.indexOf(String(videoId));
      if (row < 0 || X[row] < 0) return null;
      var r = canvas.getBoundingClientRect(), p = toScreen(row);
      return {x: r.left + p[0], y: r.top + p[1]};
    };

    resize();
  }

  // ------------------------------------------------------------------ search
  function setUpSearch() {
    var input = document.getElementById("search");
    var summary = document.getElementById("search-summary");
    var list = document.getElementById("search-results");
    if (!input) return;
    var haystack = null, timer = 0;

    function texts() {
      if (haystack) return haystack;
      var clusterText = D.clusters.map(function (c, ci) { return clusterName(ci, 99).toLowerCase(); });
      haystack = new Array(N);
      for (var i = 0; i < N; i++) {
        haystack[i] = (D.ids[i] + "\n" + D.captions[i] + "\n" + fileName(i) + "\n" + clusterText[clusterOf[i]]).toLowerCase();
      }
      return haystack;
    }

    function run() {
      var query = input.value.trim().toLowerCase(), terms = query.split(/\s+/).filter(Boolean);
      list.textContent = "";
      list.setAttribute("data-query", query);  // which search the list answers (tests wait for it)
      if (!terms.length) {
        showClusters();
        if (map) map.setMatches(null, 0, []);
        return;
      }
      var hay = texts(), m = new Uint8Array(N), rows = [], n = 0, exact = -1;
      for (var i = 0; i < N; i++) {
        var h = hay[i], ok = true;
        for (var t = 0; t < terms.length && ok; t++) ok = h.indexOf(terms[t]) >= 0;
        if (!ok) continue;
        m[i] = 1; n++;
        if (D.ids[i].toLowerCase() === query) exact = i;
        if (rows.length < LIST_MAX) rows.push(i);
      }
      if (exact >= 0 && rows.indexOf(exact) !== 0) {  // the video whose id is the query comes first
        rows = [exact].concat(rows.filter(function (r) { return r !== exact; })).slice(0, LIST_MAX);
      }
      var clusters = [];
      D.clusters.forEach(function (c, ci) {
        var name = clusterName(ci, 99).toLowerCase();
        if (terms.every(function (t) { return name.indexOf(t) >= 0; })) clusters.push(ci);
      });
      summary.textContent = count(n, "video matches", "videos match") +
        (n > rows.length ? " (the first " + rows.length + " are listed)" : "") +
        (clusters.length ? "; " + count(clusters.length, "cluster's", "clusters'") + " keywords match" : "");
      clusters.forEach(function (ci) { list.appendChild(clusterItem(ci)); });
      rows.forEach(function (row) { list.appendChild(resultItem(row)); });
      if (map) map.setMatches(m, n, rows.length === n ? rows : []);
    }

    // with no search, the panel is the legend: every cluster, largest first
    function showClusters() {
      summary.textContent = "Clusters, largest first. Type to search the videos.";
      D.clusters.map(function (c, ci) { return ci; })
        .sort(function (a, b) { return D.clusters[b].count - D.clusters[a].count || a - b; })
        .forEach(function (ci) { list.appendChild(clusterItem(ci)); });
    }

    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 120); });
    input.addEventListener("keydown", function (e) { if (e.key === "Enter") { clearTimeout(timer); run(); } });
    run();
  }

  function clusterLink(ci, row, text) {
    var a = make("a", "cluster-link", text);
    a.href = "#cluster-" + D.clusters[ci].id;
    a.addEventListener("click", function (e) { e.preventDefault(); openCluster(ci, row); });
    return a;
  }

  function clusterItem(ci) {
    var li = make("li", "cluster-match");
    li.appendChild(swatch(ci));
    li.appendChild(clusterLink(ci, undefined, clusterName(ci, 4) + " (" +
                               count(D.clusters[ci].count, "video", "videos") + ")"));
    return li;
  }

  function resultItem(row) {
    var li = make("li");
    li.setAttribute("data-video", D.ids[row]);
    li.appendChild(swatch(clusterOf[row]));
    if (map && D.x[row] >= 0) {
      var b = make("button", "linklike", D.ids[row]);
      b.type = "button";
      b.title = "show on the map";
      b.addEventListener("click", function () { map.showVideo(row); });
      li.appendChild(b);
    } else {
      li.appendChild(make("span", null, D.ids[row]));
    }
    li.appendChild(document.createTextNode(" "));
    li.appendChild(clusterLink(clusterOf[row], row,
                               D.clusters[clusterOf[row]].id === NOISE_ID ? "noise" : "cluster " + D.clusters[clusterOf[row]].id));
    li.appendChild(make("div", "caption", D.captions[row]));
    return li;
  }

  // ------------------------------------------------------------------ start
  var pane = document.getElementById("map-pane");
  var explorer = document.getElementById("explorer");
  if (explorer) explorer.hidden = false;
  if (pane && D.x.some(function (v) { return v >= 0; })) {
    map = new VideoMap(pane);
  } else if (pane) {
    pane.hidden = true;
  }
  setUpSearch();
  setUpMemberLists();
  var m = /^#cluster-(-?\d+)$/.exec(location.hash);
  if (m && clusterIndexById[m[1]] !== undefined) memberList(clusterIndexById[m[1]]);

  window.vidclustExplorer = {
    map: map,
    openCluster: function (clusterId) { openCluster(clusterIndexById[clusterId]); },
    screenPositionOf: function (videoId) { return map ? map.screenPositionOf(videoId) : null; }
  };
})();
