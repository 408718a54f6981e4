
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("trial-data").textContent);
  var trials = data.trials;
  var FILTERS = data.filters;
  var WHY = FILTERS.indexOf("failure") >= 0;
  var REGION_LABELS = {preamble: "preamble", before: "before the needle", context_before: "haystack before",
    needle: "needle", after: "after the needle", context_after: "haystack after", question: "question",
    tail: "template tail", prompt: "prompt (needle not found in the saved text)", distractor: "look-alike"};
  var openId = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function pct(x) { return (Math.round(x * 1000) / 10) + "%"; }
  function value(t, f) {
    if (f === "correct") { return t.status !== "ok" ? "skipped" : (t.correct ? "yes" : "no"); }
    if (f === "depth") { return t.control ? "control" : t.depth === null ? "–" : pct(t.depth); }
    if (f === "layout") { return t.control ? "control: " + t.control : (t.layout || "(default)"); }
    if (f === "model") { return t.untrained ? t.variant + " (untrained control)" : t.variant; }
    if (f === "failure") { return t.failure || "–"; }
    return String(t[f]);
  }
  function numeric(text) { var n = parseFloat(text); return isNaN(n) ? Infinity : n; }

  function fillFilters() {
    FILTERS.forEach(function (f) {
      var select = document.getElementById("filter-" + f);
      var seen = {};
      trials.forEach(function (t) { seen[value(t, f)] = true; });
      var values = Object.keys(seen);
      values.sort(function (a, b) { return (numeric(a) - numeric(b)) || (a < b ? -1 : a > b ? 1 : 0); });
      values.forEach(function (v) { var o = el("option", "", v); o.value = v; select.appendChild(o); });
      select.addEventListener("change", render);
    });
  }
  function chosen() {
    var out = {};
    FILTERS.forEach(function (f) { out[f] = document.getElementById("filter-" + f).value; });
    return out;
  }
  function render() {
    var want = chosen();
    var body = document.querySelector("#trials tbody");
    body.textContent = "";
    var shown = 0;
    trials.forEach(function (t, i) {
      for (var k = 0; k < FILTERS.length; k++) {
        var f = FILTERS[k];
        if (want[f] !== "" && value(t, f) !== want[f]) { return; }
      }
      shown += 1;
      var tr = el("tr");
      tr.setAttribute("data-index", String(i));
      tr.setAttribute("tabindex", "0");
      if (t.id === openId) { tr.className = "open"; }
      [value(t, "model"), t.task, t.length === null ? "–" : t.length.toLocaleString("en-US"), value(t, "depth"), value(t, "layout")]
        .forEach(function (v, c) { tr.appendChild(el("td", c === 2 || c === 3 ? "num" : "", v)); });
      var mark = value(t, "correct");
      var cell = el("td", t.untrained || (mark !== "yes" && mark !== "no") ? "muted" : mark === "yes" ? "ok" : "bad",
                    mark === "yes" ? "✓" : mark === "no" ? "✗" : "–");
      if (t.untrained) { cell.title = data.untrained_note; }  // random weights: right or wrong by chance
      tr.appendChild(cell);
      if (WHY) { tr.appendChild(el("td", "why", value(t, "failure"))); }
      tr.appendChild(el("td", "answer", t.answer));
      tr.addEventListener("click", function () { show(i); });
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") { show(i); } });
      body.appendChild(tr);
    });
    document.getElementById("shown").textContent = shown + " of " + trials.length + " trials";
  }

  function fact(dl, name, text) { dl.appendChild(el("dt", "", name)); dl.appendChild(el("dd", "", text)); }
  function answered(t, index) { return t.failure === "distractor" && t.failure_distractor === index; }
  function lookLabel(t, index) {
    var d = (t.distractors || [])[index];
    return "look-alike " + (index + 1) + (d ? " (value " + d.value + ")" : "") + (answered(t, index) ? ", answered" : "");
  }
  function promptView(t) {
    var box = el("div", "prompt");
    t.pieces.forEach(function (p) {
      var label = p.region === "distractor" ? lookLabel(t, p.distractor) : (REGION_LABELS[p.region] || p.region);
      var marked = p.region === "needle" || p.region === "distractor";
      var cls = p.region === "needle" ? "needle" : p.region === "distractor" ?
        "distractor" + (answered(t, p.distractor) ? " answered" : "") : "piece r-" + p.region;
      var span = el(marked ? "mark" : "span", cls);
      span.title = label;
      if (p.region === "distractor") { span.setAttribute("data-distractor", String(p.distractor)); }
      if (p.text === null) {
        span.appendChild(el("span", "placeholder", "[" + label + ": " + (p.tokens === null ? "?" : p.tokens) +
                            " tokens, text not saved]"));
      } else {
        span.appendChild(document.createTextNode(p.text));
        if (p.folded) {
          span.appendChild(el("span", "fold", " … " + p.folded.toLocaleString("en-US") + " characters folded … "));
          span.appendChild(document.createTextNode(p.tail));
        }
      }
      box.appendChild(span);
    });
    return box;
  }
  function lookAt(t, pos) {
    var found = null;
    (t.distractors || []).forEach(function (d) { if (d.start !== null && d.start <= pos && pos < d.end) { found = d; } });
    return found;
  }
  function tokenView(v, t) {
    var box = el("div", "token-view");
    var select = el("select");
    select.id = "token-layer";
    v.series.forEach(function (name, i) { var o = el("option", "", name); o.value = String(i); select.appendChild(o); });
    box.appendChild(select);
    box.appendChild(el("p", "muted", "Prompt tokens coloured by the attention mass of the last prompt token " +
      "(mean over heads; colour strength = square root of mass / the largest mass off the sink). The sink " +
      "(dashed) is left off the scale: its mass " + (v.sink === null ? "–" : v.sink.map(function (m) {
        return m === null ? "–" : m.toFixed(3); }).join(" / ")) + "."));
    var prompt = el("div", "prompt tokens");
    var cells = [];
    v.segments.forEach(function (s) {
      var label = REGION_LABELS[s.region] || s.region;
      var wrap = el(s.region === "needle" ? "mark" : "span", s.region === "needle" ? "needle" : "seg r-" + s.region);
      wrap.title = label;
      s.texts.forEach(function (text, k) {
        if (s.folded && k === s.head) {
          wrap.appendChild(el("span", "fold", " … " + s.folded.toLocaleString("en-US") + " tokens folded … "));
        }
        var pos = s.start + (k < s.head ? k : k + s.folded);
        var look = lookAt(t, pos);
        var tok = el("span", s.region === "sink" ? "tok sink" : look === null ? "tok" :
          "tok look" + (answered(t, look.index) ? " answered" : ""), text);
        tok.setAttribute("data-pos", String(pos));
        wrap.appendChild(tok);
        cells.push([tok, s, k]);
      });
      prompt.appendChild(wrap);
    });
    function paint() {
      var i = parseInt(select.value, 10);
      var top = v.top[i] > 0 ? v.top[i] : 1e-9;
      cells.forEach(function (c) {
        var m = c[1].mass[i][c[2]];
        c[0].title = (REGION_LABELS[c[1].region] || c[1].region) + ", token " + c[0].getAttribute("data-pos") +
          ": " + (m === null ? "–" : m.toPrecision(3));
        if (c[1].region === "sink") { return; }
        var a = m === null || m <= 0 ? 0 : Math.sqrt(Math.min(1, m / top));
        c[0].style.backgroundColor = "rgba(213, 94, 0, " + a.toFixed(3) + ")";
      });
    }
    select.addEventListener("change", paint);
    paint();
    box.appendChild(prompt);
    return box;
  }
  function strip(values, title) {
    var box = el("div", "strip");
    var top = Math.max.apply(null, values.map(function (v) { return v || 0; }).concat([1e-9]));
    values.forEach(function (v, i) {
      var cell = el("div");
      var a = v === null ? 0 : v / top;
      cell.style.background = "rgba(0, 114, 178, " + a.toFixed(3) + ")";
      cell.title = title + " " + i + ": " + (v === null ? "–" : v.toFixed(4));
      box.appendChild(cell);
    });
    return box;
  }
  function attentionView(a) {
    var box = el("div", "attention");
    box.appendChild(el("h3", "", "Attention (last prompt token; " + a.layers + " layers x " + a.heads + " heads)"));
    box.appendChild(el("p", "", "Sink (first tokens), shown apart: " + (a.sink === null ? "–" : a.sink.toFixed(3))));
    var select = el("select");
    select.id = "attention-layer";
    var avg = el("option", "", "mean over layers and heads"); avg.value = "mean"; select.appendChild(avg);
    a.bins_by_layer.forEach(function (_, l) { var o = el("option", "", "layer " + l); o.value = String(l); select.appendChild(o); });
    var holder = el("div");
    function draw() {
      holder.textContent = "";
      var values = select.value === "mean" ? a.bins : a.bins_by_layer[parseInt(select.value, 10)];
      holder.appendChild(strip(values, "bin"));
      holder.appendChild(el("div", "muted", "haystack bins, first to last; darker = more attention mass"));
    }
    select.addEventListener("change", draw);
    box.appendChild(select); box.appendChild(holder); draw();
    if (a.tokens) {
      box.appendChild(strip(a.tokens.cells, "cell"));
      box.appendChild(el("div", "muted", "per-token mass over all " + a.tokens.positions + " prompt positions " +
                         "(mean over layers " + a.tokens.layers.join(", ") + ")"));
    }
    var bars = el("table", "bars");
    Object.keys(a.regions).forEach(function (name) {
      var tr = el("tr"); var v = a.regions[name];
      tr.appendChild(el("td", "", name)); tr.appendChild(el("td", "num", v === null ? "–" : v.toFixed(3)));
      var td = el("td", "bar"); var fill = el("div", "fill"); fill.style.width = ((v || 0) * 100).toFixed(1) + "%";
      td.appendChild(fill); tr.appendChild(td); bars.appendChild(tr);
    });
    box.appendChild(el("h4", "", "Mass per region (mean over layers and heads)")); box.appendChild(bars);
    var heads = el("table");
    var head = el("tr");
    ["layer", "head", "needle mass", "copy events"].forEach(function (h) { head.appendChild(el("th", "", h)); });
    heads.appendChild(head);
    a.top_heads.forEach(function (h) {
      var tr = el("tr");
      [h.layer, h.head, h.needle_mass === null ? "–" : h.needle_mass.toFixed(3), h.copies]
        .forEach(function (v) { tr.appendChild(el("td", "num", v)); });
      heads.appendChild(tr);
    });
    box.appendChild(el("h4", "", "Top retrieval heads of this trial (most mass on the needle)"));
    box.appendChild(heads);
    return box;
  }
  function show(i) {
    var t = trials[i];
    openId = t.id;
    var detail = document.getElementById("detail");
    detail.textContent = "";
    detail.setAttribute("data-trial", t.id);
    detail.appendChild(el("h2", "", t.id));
    var dl = el("dl", "facts");
    fact(dl, "model", value(t, "model")); fact(dl, "task / length / depth", t.task + " · " + (t.length === null ? "?" : t.length.toLocaleString("en-US")) + " tokens · " + value(t, "depth"));
    fact(dl, "question", t.question); fact(dl, "gold answer", t.gold); fact(dl, "model answer", t.answer);
    fact(dl, "correct", value(t, "correct") + (t.untrained ? " (" + data.untrained_note + ")" : ""));
    if (t.failure) { fact(dl, "failure type", t.failure + " — " + (data.failure_words[t.failure] || "")); }
    if (t.distractors && t.distractors.length) {
      fact(dl, "look-alikes", t.distractors.map(function (d) {
        return (d.index + 1) + ": " + d.value + (d.depth === null ? "" : " at " + pct(d.depth)) +
          (answered(t, d.index) ? " (answered)" : "");
      }).join("; "));
    }
    if (t.attention_focus) { fact(dl, "answer step looked at", t.attention_focus.replace("_", "-")); }
    fact(dl, "gold log-prob", t.logprob_sum === null ? "–" : t.logprob_sum.toFixed(3) + " (mean per token " +
         (t.logprob_mean === null ? "–" : t.logprob_mean.toFixed(3)) + ")");
    fact(dl, "prompt", (t.prompt_tokens === null ? "?" : t.prompt_tokens) + " tokens; shown from " + data.sources[t.source]);
    detail.appendChild(dl);
    var legend = el("div", "legend");
    var regions = ["preamble", "before", "needle", "after", "question"];
    if (t.distractors && t.distractors.length) { regions.push("distractor"); }
    regions.forEach(function (r) {
      var s = el("span", r === "needle" || r === "distractor" ? "" : "r-" + r, REGION_LABELS[r]);
      if (r === "needle") { s.style.background = "#ffd84d"; }
      if (r === "distractor") { s.style.background = "#fde0cc"; s.style.outline = "2px dashed #d55e00"; }
      legend.appendChild(s);
    });
    detail.appendChild(legend);
    if (t.token_view) { detail.appendChild(tokenView(t.token_view, t)); }
    else {
      if (t.token_note) { detail.appendChild(el("p", "muted token-note", t.token_note)); }
      detail.appendChild(promptView(t));
    }
    if (t.attention) { detail.appendChild(attentionView(t.attention)); }
    else { detail.appendChild(el("p", "muted", "No attention was captured for this trial.")); }
    render();
  }
  function fromHash() {
    var params = {};
    window.location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) { return; }
      var at = kv.indexOf("=");
      if (at > 0) { params[decodeURIComponent(kv.slice(0, at))] = decodeURIComponent(kv.slice(at + 1)); }
    });
    FILTERS.forEach(function (f) { if (params[f] !== undefined) { document.getElementById("filter-" + f).value = params[f]; } });
    render();
    if (params.trial !== undefined) {
      for (var i = 0; i < trials.length; i++) { if (trials[i].id === params.trial) { show(i); break; } }
    }
  }
  fillFilters();
  fromHash();
  window.addEventListener("hashchange", fromHash);
})();
