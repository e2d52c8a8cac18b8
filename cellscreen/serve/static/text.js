// Pieces of the service's page that turn values into text and elements (page.js uses them): no state, no
// requests.  User-supplied strings go into the DOM through textContent or setAttribute, never innerHTML.
"use strict";
window.cellscreenText = (function () {
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);  // strings become text nodes
    return node;
  }

  function bytesText(n) {
    if (n >= 1024 * 1024) return (n / 1024 / 1024).toFixed(n % (1024 * 1024) ? 1 : 0) + " MiB";
    if (n >= 1024) return (n / 1024).toFixed(0) + " KiB";
    return n + " bytes";
  }

  function percent(p, digits = 1) { return (100 * p).toFixed(digits) + "%"; }

  function count(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en"); }

  function shareText(percentValue, low, high) {
    return `${Number(percentValue).toFixed(2)}% (95% CI ${Number(low).toFixed(2)}–${Number(high).toFixed(2)}%)`;
  }

  function thresholdText(info) {
    if (!info.positive_class) return "none (the likeliest class is called)";
    const decision = (info.validation || {}).decision;
    const t = Number(info.decision_threshold);
    const how = decision && decision.operating_point ? ` (chosen on the validation cells for ${decision.operating_point})`
      : decision ? " (given)" : t === 0.5 ? " (the default)" : "";
    return `${info.positive_class} from a probability of ${t.toPrecision(4).replace(/\.?0+$/, "")} on${how}`;
  }

  function validationRows(v) {
    const rows = [["Dataset", v.dataset || "–"]];
    const held = v.held_out || {};
    const parts = ["val", "test"].filter((k) => k in held).map((k) => `${k} ${percent(Number(held[k]), 0)}`);
    const by = v.split_by === "group" ? "by patient or slide" : v.split_by ? "by " + v.split_by : "";
    if (v.split_method) {
      rows.push(["Split", [v.split_method, by, parts.length ? "held out: " + parts.join(", ") : ""]
        .filter(Boolean).join(", ") + (v.leaky ? " (leaky: cells of one patient on both sides)" : "")]);
    }
    if (v.training_cells || v.validation_cells) {
      rows.push(["Cells", `${count(v.training_cells)} trained on, ${count(v.validation_cells)} validated on`]);
    }
    const labels = v.labels;
    rows.push(["Labels", labels ? Object.entries(labels.files).map(([name, sha]) => `relabelled by ${name} ` +
      `(sha256 ${String(sha).slice(0, 12)})`).join(", ") + `: ${count(labels.changed)} cells changed, ` +
      `${count(labels.excluded)} left out` : "the dataset's own"]);
    if ((v.extra_training || []).length) {
      rows.push(["Also trained on", `cells from ${v.extra_training.join(", ")} (training only, not in the figures)`]);
    }
    if (v.kept_for && v.kept_for.name) {
      rows.push(["Kept for", `${v.kept_for.name} ${Number(v.kept_for.value).toFixed(4)}` +
                             (v.kept_for.epoch !== undefined ? ` (epoch ${v.kept_for.epoch})` : "")]);
    }
    const test = v.test;
    if (test) {
      const shown = ["accuracy", "sensitivity", "specificity", "roc_auc"].filter((k) => test[k]).map((k) => {
        const ci = test[k].ci95;
        return `${k.replace("roc_auc", "ROC AUC")} ${Number(test[k].value).toFixed(3)}` +
               (Array.isArray(ci) ? ` (95% CI ${Number(ci[0]).toFixed(3)}–${Number(ci[1]).toFixed(3)})` : "");
      });
      const judged = test.labels === "relabelled" ? ", against the relabelled labels" : "";
      rows.push(["Test", `${count(test.cells)} cells of ${count(test.groups)} ${test.group_kind || "group"}s${judged}: ` +
                 shown.join("; ")]);
    } else {
      rows.push(["Test figures", "none beside this model (cellscreen evaluate MODEL --subset test --out RUN/test)"]);
    }
    return rows;
  }

  function csvField(value) {
    const text = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]|^\s|\s$/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  // A field's counts as [term, value] pairs (``positive``: the name of the positive class).
  function fieldCountRows(r, positive) {
    const c = r.counts || {}, share = r.parasitemia;
    return [["Red cells counted", count(c.red_counted)], [positive, count(c.positive)],
            ["Parasitemia", share ? shareText(share.percent, share.low, share.high) : "– (no red cell counted)"],
            ["Not single cells", `${count(c.not_single)} (not counted)`],
            ["Cut by the border", `${count(c.border)} (not counted)`], ["White cells", count(c.white)]];
  }

  // One row of the per-sample table from a row of POST /v1/samples.
  function sampleRow(s) {
    const share = s.cells ? `${percent(s.share)} (95% CI ${percent(s.low)}–${percent(s.high)})` : "–";
    const para = s.parasitemia ? shareText(s.parasitemia.percent, s.parasitemia.low, s.parasitemia.high) : "–";
    return el("tr", {},
      el("th", { scope: "row", text: s.sample === "." ? "(no folder)" : s.sample }),
      el("td", { text: count(s.cells) }), el("td", { text: s.cells ? count(s.flagged) : "–" }), el("td", { text: share }),
      el("td", { text: count(s.fields) }), el("td", { text: s.fields ? count(s.red_counted) : "–" }),
      el("td", { text: s.fields ? count(s.positive) : "–" }), el("td", { text: para }),
      el("td", { class: "warnings", text: (s.warnings || []).join("; ") }));
  }

  return { el, bytesText, percent, count, shareText, thresholdText, validationRows, fieldCountRows, sampleRow, csvField };
})();
