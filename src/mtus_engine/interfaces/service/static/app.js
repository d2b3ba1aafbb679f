// The reviewer's page: evaluate in place, toggle a criterion (what-if), copy the rationale as Markdown.
// No framework, no network but this server. Without this script the form posts to / and works too.
(function () {
  "use strict";
  var $ = function (s) { return document.querySelector(s); };
  var state = null;            // {result, case, toggles} of the last evaluation
  var active = [];             // keys of the toggles applied
  var edition = "";
  var renders = 0;            // drawn answers so far (tests wait on data-renders)

  function headers(extra) {
    var h = extra || {};
    var t = $("#token");
    if (t && t.value) { h["Authorization"] = "Bearer " + t.value; }
    return h;
  }
  function say(text) { $("#status").textContent = text; }
  function fail(text) { var e = $("#error"); e.textContent = text; e.hidden = !text; }

  async function answer(resp) {
    var text = await resp.text();
    if (!resp.ok) {
      var msg = text;
      try { msg = JSON.parse(text).error || text; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return text;
  }

  async function draw(result, baseline) {
    var resp = await fetch("/ui/fragment", {
      method: "POST", headers: headers({"Content-Type": "application/json"}),
      body: JSON.stringify({result: result, toggles: state.toggles, active: active, baseline: baseline || null})
    });
    var html = await answer(resp);
    $("#results-slot").innerHTML = html;
    bind();
    document.body.setAttribute("data-renders", String(++renders));
  }

  async function evaluate(ev) {
    ev.preventDefault();
    fail("");
    var file = $("#file").files[0];
    var body = file ? await file.arrayBuffer() : $("#document").value;
    if (!file && !body.trim()) { fail("nothing to evaluate: paste a document or choose a file"); return; }
    edition = $("#edition").value;
    var url = "/ui/evaluate?edition=" + encodeURIComponent(edition) +
              (file ? "&filename=" + encodeURIComponent(file.name) : "");
    say("Evaluating…");
    $("#submit").disabled = true;
    try {
      var resp = await fetch(url, {method: "POST", headers: headers({"Content-Type": "application/octet-stream"}), body: body});
      state = JSON.parse(await answer(resp));
      active = [];
      await draw(state.result, null);
      say("Evaluated: " + state.result.determinations.map(function (d) { return d.decision; }).join(", "));
      $("#results-title").focus();
    } catch (err) {
      fail(err.message); say("");
    } finally {
      $("#submit").disabled = false;
    }
  }

  async function retoggle() {
    fail("");
    if (!active.length) { await draw(state.result, null); say("Toggles cleared: the record's answers"); return; }
    var set = {}, unset = [];
    active.forEach(function (key) {
      var t = state.toggles[key];
      Object.keys(t.set).forEach(function (p) { set[p] = t.set[p]; unset = unset.filter(function (u) { return u !== p; }); });
      t.unset.forEach(function (p) { delete set[p]; if (unset.indexOf(p) < 0) { unset.push(p); } });
    });
    say("Re-evaluating…");
    try {
      var resp = await fetch("/v1/whatif?edition=" + encodeURIComponent(edition), {
        method: "POST", headers: headers({"Content-Type": "application/json"}),
        body: JSON.stringify({"case": state["case"], "set": set, "unset": unset})
      });
      var w = JSON.parse(await answer(resp));
      await draw(w.variant, state.result.determinations.map(function (d) { return d.decision; }));
      say("What-if: " + w.variant.determinations.map(function (d) { return d.decision; }).join(", "));
    } catch (err) {
      fail(err.message); say("");
    }
  }

  async function copyMarkdown() {
    var area = $("#markdown");
    var text = area.value;
    var done = false;
    try { await navigator.clipboard.writeText(text); done = true; } catch (e) { /* no clipboard permission */ }
    if (!done) {
      var details = area.closest("details"); if (details) { details.open = true; }
      area.focus(); area.select();
      try { done = document.execCommand("copy"); } catch (e) { done = false; }
    }
    $("#copy-status").textContent = done ? "Copied the rationale as Markdown" : "Select the Markdown below and copy it";
  }

  function bind() {
    document.querySelectorAll("input.toggle").forEach(function (box) {
      box.addEventListener("change", function () {
        var key = box.getAttribute("data-key");
        active = active.filter(function (k) { return k !== key; });
        if (box.checked) { active.push(key); }
        retoggle().then(function () {
          var again = document.querySelector('input.toggle[data-key="' + CSS.escape(key) + '"]');
          if (again) { again.focus(); }
        });
      });
    });
    var copy = $("#copy-md"); if (copy) { copy.addEventListener("click", copyMarkdown); }
    var clear = $("#clear-toggles"); if (clear) { clear.addEventListener("click", function () { active = []; retoggle(); }); }
    var title = $("#results-title"); if (title) { title.setAttribute("tabindex", "-1"); }
  }

  var initial = $("#initial");
  if (initial) { state = JSON.parse(initial.textContent); edition = $("#edition").value; }
  $("#evaluate-form").addEventListener("submit", evaluate);
  bind();
  document.body.setAttribute("data-ready", "1");
})();
