// Keeps the result page live. The server renders the page with the current
// tallies; this script listens to /events (Server-Sent Events, one JSON object
// {"counts":{"a":2,"b":1},"total":3} per change) and updates the bars,
// percentages and total in place. EventSource reconnects by itself (the server
// sends `retry:`); if the browser gives up (an HTTP error while result was
// restarting), a new EventSource is opened after a short pause.
// percentages() and votesText() repeat src/page.rs to the letter.
"use strict";

(function () {
  const rows = Array.from(document.querySelectorAll("[data-key]")).map((el) => ({
    key: el.dataset.key,
    pct: el.querySelector('[data-role="pct"]'),
    bar: el.querySelector('[data-role="bar"]'),
    count: el.querySelector('[data-role="count"]'),
  }));
  const total = document.getElementById("total");
  const status = document.getElementById("status");

  // Whole percentages adding up to 100: largest remainder, ties to the
  // earlier option.
  function percentages(counts) {
    const sum = counts.reduce((s, c) => s + Math.max(c, 0), 0);
    if (sum === 0) return counts.map(() => 0);
    const out = [];
    const rem = [];
    counts.forEach((c, i) => {
      const scaled = Math.max(c, 0) * 100;
      out.push(Math.floor(scaled / sum));
      rem.push([scaled % sum, i]);
    });
    let short = 100 - out.reduce((s, p) => s + p, 0);
    rem.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    for (const [, i] of rem) {
      if (short-- <= 0) break;
      out[i] += 1;
    }
    return out;
  }

  function countText(n) {
    return n === 1 ? "1 vote" : n + " votes";
  }

  function votesText(n) {
    return n === 0 ? "No votes yet" : countText(n);
  }

  function setStatus(state, text) {
    status.hidden = false;
    status.dataset.state = state;
    status.textContent = text;
    document.body.dataset.stream = state;
  }

  function render(t) {
    const counts = rows.map((r) => Number(t.counts[r.key] || 0));
    const pcts = percentages(counts);
    rows.forEach((r, i) => {
      r.pct.textContent = pcts[i] + "%";
      r.bar.value = pcts[i];
      r.bar.textContent = pcts[i] + "%";
      r.count.textContent = countText(counts[i]);
    });
    total.textContent = votesText(Number(t.total) || 0);
  }

  let source = null;
  let pause = 1000;

  function connect() {
    source = new EventSource("/events");
    source.onopen = () => {
      pause = 1000;
      setStatus("live", "Live");
    };
    source.onmessage = (e) => {
      let t;
      try {
        t = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      render(t);
      setStatus("live", "Live");
    };
    source.onerror = () => {
      setStatus("reconnecting", "Reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, pause);
        pause = Math.min(pause * 2, 10000);
      }
    };
  }

  setStatus("connecting", "Connecting…");
  connect();
})();
