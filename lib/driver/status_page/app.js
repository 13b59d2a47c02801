// The driver's status page (lib/driver/status_page.h): polls /api/status and
// the selected job's /api/job?since=<last batch> every 1.5 s and redraws in
// place. Every value goes into the DOM as text (never as markup).
'use strict';
(function () {
  const POLL_MS = 1500;
  const $ = (id) => document.getElementById(id);
  const page = {
    job: null,          // the selected job's id
    interval: 1000,     // its batch interval
    last: 0,            // its newest batch held here
    rows: [],           // its batches, oldest first (the API's columns)
    charts: {},
    drawn: 0,
    failures: 0,
  };

  // ---- formatting ----
  const fmtInt = (n) => (n === undefined || n === null) ? '–' : Math.round(n).toLocaleString('en-US');
  function fmtRate(r) {
    if (r === undefined || r === null) return '–';
    if (r >= 1e6) return (r / 1e6).toFixed(2) + ' M/s';
    if (r >= 1e4) return (r / 1e3).toFixed(1) + ' k/s';
    return Math.round(r).toLocaleString('en-US') + ' /s';
  }
  function fmtMs(ms) {
    if (ms === undefined || ms === null) return '–';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(2) + ' s';
    return (ms / 60000).toFixed(1) + ' min';
  }
  function fmtBytes(b) {
    if (!b) return '0 B';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (i === 0 || b >= 10 ? Math.round(b) : b.toFixed(1)) + ' ' + u[i];
  }
  const pad = (n) => String(n).padStart(2, '0');
  function fmtTime(ms) {
    if (!ms) return '–';
    const d = new Date(ms);
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function fmtBatchTime(ms) {
    return page.interval < 1000 ? fmtTime(ms) + '.' + Math.floor((ms % 1000) / 100) : fmtTime(ms);
  }
  function fmtAxis(v, unit) {
    const a = Math.abs(v);
    if (unit === 'ms') return a >= 10000 ? (v / 1000).toFixed(0) + ' s' : a >= 1000 ? (v / 1000).toFixed(1) + ' s' : v + ' ms';
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + 'k';
    return String(v);
  }
  function fmtDateTime(ms) {
    if (!ms) return '–';
    const d = new Date(ms);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + fmtTime(ms);
  }
  function fmtAgo(ms) {
    if (ms < 0) ms = 0;
    if (ms < 60000) return Math.round(ms / 1000) + ' s';
    if (ms < 3600000) return Math.round(ms / 60000) + ' min';
    return (ms / 3600000).toFixed(1) + ' h';
  }

  // ---- DOM helpers: text only ----
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'href') e.href = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }
  const td = (text, cls) => el('td', cls ? { class: cls } : {}, text);
  const num = (text, extra) => td(text, 'num' + (extra ? ' ' + extra : ''));
  function fill(tbody, rows, cols, emptyText) {
    tbody.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { class: 'empty', colSpan: cols }, emptyText))]));
  }
  function delayClass(ms, interval) {
    if (!interval) return '';
    if (ms > 4 * interval) return 'bad';
    if (ms > interval) return 'warn';
    return '';
  }

  // ---- the overview ----
  function card(label, value, sub, id) {
    return el('div', { class: 'card', id: id || '' }, el('div', { class: 'label' }, label),
      el('div', { class: 'value' }, value), el('div', { class: 'sub' }, sub || '\u00a0'));
  }

  function renderSummary(s) {
    const running = s.jobs.filter((j) => j.state === 'running' || j.state === 'draining');
    const rate = running.reduce((a, j) => a + (j.input_rate || 0), 0);
    const slots = s.workers.reduce((a, w) => a + w.slots, 0);
    const leader = s.leader;
    const worst = running.reduce((a, j) => Math.max(a, j.max_total_delay_ms || 0), 0);
    $('summary').replaceChildren(
      card('Leader', leader ? leader.id : 'none', leader ? 'epoch ' + leader.epoch : 'no leader known', 'card-leader'),
      card('Drivers', String(s.drivers.length), 'WAL commit ' + fmtInt(s.wal.commit_seq)),
      card('Workers', String(s.workers.length), fmtInt(slots) + ' task slots'),
      card('Jobs', String(running.length), (s.jobs.length - running.length) + ' stopped or failed'),
      card('Input rate', fmtRate(rate), 'all running jobs'),
      card('Worst total delay', fmtMs(worst), 'last 10 batches, any job'));
  }

  function renderBanner(s) {
    let banner = $('banner');
    if (s.driver.role === 'leader') {
      if (banner) banner.remove();
      return;
    }
    if (!banner) {
      banner = el('div', { id: 'banner', class: 'banner' });
      document.querySelector('main').before(banner);
    }
    const l = s.leader;
    if (!l) {
      banner.replaceChildren('This driver is a standby; no leader is known now.');
      return;
    }
    banner.replaceChildren('This driver is a standby. The leader is ', el('b', {}, l.id),
      ' (epoch ' + l.epoch + '). ',
      l.http_address ? el('a', { id: 'leader-link', href: 'http://' + l.http_address + '/' },
        "Open the leader's page at " + l.http_address) : '(the leader serves no status page)');
  }

  function renderHeader(s) {
    const badge = $('role-badge');
    badge.textContent = s.driver.role;
    badge.className = 'badge badge-' + s.driver.role;
    $('epoch-badge').textContent = s.driver.role === 'leader' ? 'epoch ' + s.driver.epoch : '';
    document.body.dataset.role = s.driver.role;
  }

  function renderJobs(s) {
    $('jobs-count').textContent = s.jobs.length ? '(' + s.jobs.length + ')' : '';
    const rows = s.jobs.map((j) => {
      const b = j.last_batch;  // the API's batch columns
      const tr = el('tr', { 'data-job': j.id },
        td(j.id, 'mono job-name'),
        el('td', {}, el('span', { class: 'badge badge-' + j.state, title: j.stop_reason || '' }, j.state)),
        num(fmtMs(j.batch_interval_ms)),
        num(fmtInt(j.last_committed_batch)),
        num(String(j.in_flight), j.in_flight > 2 ? 'warn' : ''),
        num(fmtRate(j.input_rate)),
        num(b ? fmtMs(b[4]) : '–', b ? delayClass(b[4], j.batch_interval_ms) : ''),
        num(b ? fmtMs(b[5]) : '–', b ? delayClass(b[5], j.batch_interval_ms) : ''),
        num(b ? fmtMs(b[6]) : '–', b ? delayClass(b[6], j.batch_interval_ms) : ''),
        num(fmtMs(j.max_total_delay_ms)),
        num(fmtInt(j.total_input)),
        num(fmtInt(j.total_dead_letters), j.total_dead_letters ? 'warn' : ''));
      if (j.id === page.job) tr.classList.add('selected');
      tr.addEventListener('click', () => selectJob(j.id, j.batch_interval_ms));
      return tr;
    });
    fill($('jobs-table').tBodies[0], rows, 12, 'No jobs. Submit one with sluicectl submit.');
    const select = $('job-select');
    const ids = s.jobs.map((j) => j.id);
    if (select.options.length !== ids.length || ids.some((id, i) => select.options[i].value !== id)) {
      select.replaceChildren(...ids.map((id) => el('option', { value: id }, id)));
    }
    if (page.job) select.value = page.job;
    if (!page.job || !ids.includes(page.job)) {
      let fromHash = '';
      try {
        fromHash = decodeURIComponent((location.hash.match(/job=([^&]+)/) || [])[1] || '');
      } catch (e) {
        fromHash = '';  // a malformed #job= in the address: show the first job
      }
      const pick = s.jobs.find((j) => j.id === fromHash) || s.jobs.find((j) => j.state === 'running') || s.jobs[0];
      if (pick) selectJob(pick.id, pick.batch_interval_ms);
    } else {
      const j = s.jobs.find((x) => x.id === page.job);
      if (j) page.interval = j.batch_interval_ms || page.interval;
    }
  }

  function renderDrivers(s) {
    $('drivers-count').textContent = '(' + s.drivers.length + ')';
    const rows = s.drivers.map((d) => el('tr', {},
      el('td', { class: 'mono', title: 'RPC ' + d.rpc_address + (d.http_address ? ', page ' + d.http_address : '') },
        d.http_address && !d.self ? el('a', { href: 'http://' + d.http_address + '/' }, d.id) : d.id,
        d.self ? el('span', { class: 'muted' }, ' (this page)') : null),
      el('td', {}, el('span', { class: 'badge badge-' + d.role }, d.role)),
      num(d.role === 'leader' ? String(d.epoch) : '–'),
      num(d.wal_lag === undefined ? '–' : fmtInt(d.wal_lag), d.wal_lag > 1000 ? 'warn' : '')));
    fill($('drivers-table').tBodies[0], rows, 4, 'No drivers in the group.');
    const w = s.wal;
    $('wal-line').textContent = 'WAL here: last ' + fmtInt(w.last_seq) + ', committed ' + fmtInt(w.commit_seq) +
      ', snapshot ' + fmtInt(w.snapshot_seq) + ', fence ' + w.fence +
      (w.store_degraded ? ' — STORE DEGRADED: ' + w.store_error : '') +
      (s.zk_server ? ' · ZooKeeper ' + s.zk_server : '');
  }

  function renderWorkers(s) {
    $('workers-count').textContent = '(' + s.workers.length + ')';
    const rows = s.workers.map((w) => {
      const d = w.details;
      let mem = el('span', { class: 'muted' }, '–');
      let state = el('span', { class: 'muted' }, s.worker_details ? 'not asked yet' : 'see the leader');
      if (d && !d.error) {
        const bar = el('span', { class: 'bar' }, el('span'));
        const frac = d.memory_budget_bytes ? Math.min(1, d.memory_bytes / d.memory_budget_bytes) : 0;
        bar.firstChild.style.width = (100 * frac).toFixed(1) + '%';
        mem = el('span', { title: 'spilled to disk: ' + fmtBytes(d.disk_bytes) }, bar,
          fmtBytes(d.memory_bytes) + ' of ' + fmtBytes(d.memory_budget_bytes));
        const paused = d.receivers_paused ? d.receivers_paused + ' paused' : '';
        state = d.degraded ? el('span', { class: 'bad' }, 'degraded: ' + d.degraded)
          : el('span', { class: paused ? 'warn' : 'good' }, paused || 'ok');
      } else if (d) {
        state = el('span', { class: 'bad', title: d.error }, 'unreachable');
      }
      return el('tr', {},
        el('td', { class: 'mono', title: 'RPC ' + w.rpc_address }, w.id), num(String(w.slots)),
        el('td', {}, mem),
        num(d && !d.error ? String(d.receivers) : '–'),
        num(d && !d.error ? fmtInt(d.receiver_records) : '–'),
        el('td', {}, state));
    });
    fill($('workers-table').tBodies[0], rows, 6, 'No live workers.');
    const asOf = s.workers.map((w) => (w.details ? w.details.as_of_unix_ms : 0)).filter((x) => x > 0);
    $('workers-note').textContent = s.worker_details
      ? (asOf.length ? 'Details as of ' + fmtAgo(s.now_unix_ms - Math.min(...asOf)) + ' ago; block memory against its budget.' : '')
      : 'Memory and receivers are on the leader\'s page.';
  }

  function renderTimeline(s) {
    const terms = s.leader_terms.slice().reverse();
    const items = terms.map((t, i) => {
      const prev = terms[i + 1];
      const gap = prev && prev.last_seen_unix_ms && t.first_seen_unix_ms ? t.first_seen_unix_ms - prev.last_seen_unix_ms : null;
      const sub = [
        t.first_seen_unix_ms ? 'from ' + fmtDateTime(t.first_seen_unix_ms) : 'no timed record yet',
        i === 0 ? 'current' : (t.last_seen_unix_ms ? 'last record ' + fmtTime(t.last_seen_unix_ms) : ''),
        'WAL seq ' + fmtInt(t.seq),
        gap !== null ? 'took over ' + fmtMs(gap) + ' after the previous term\'s last record' : '',
      ].filter(Boolean).join(' · ');
      return el('li', { class: i === 0 ? 'current' : '' },
        el('div', { class: 't-head' }, 'Epoch ' + t.epoch + ' — ' + t.leader_id),
        el('div', { class: 't-sub' }, sub));
    });
    $('timeline').replaceChildren(...(items.length ? items : [el('li', {}, 'No leader change in the log yet.')]));
  }

  // ---- the selected job: charts and last batches ----
  function selectJob(id, interval) {
    if (page.job === id) return;
    page.job = id;
    page.interval = interval || 1000;
    page.last = 0;
    page.polling = null;
    page.rows = [];
    $('job-title').textContent = id;
    $('job-select').value = id;
    history.replaceState(null, '', '#job=' + encodeURIComponent(id));
    for (const tr of $('jobs-table').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.job === id);
    drawJob();
    pollJob();
  }

  function windowSeconds() { return Number($('window-select').value); }

  // One poll of the selected job at a time; a batch already held is skipped.
  function pollJob() {
    if (!page.polling) page.polling = fetchJob().finally(() => { page.polling = null; });
    return page.polling;
  }

  async function fetchJob() {
    const id = page.job;
    if (!id) return;
    const w = windowSeconds();
    const limit = page.last === 0 && w > 0 ? Math.ceil(w * 1000 / page.interval) + 5 : 5000;
    const r = await fetch('/api/job?id=' + encodeURIComponent(id) + '&since=' + page.last + '&limit=' + limit,
      { cache: 'no-store' });
    if (!r.ok) throw new Error('/api/job: HTTP ' + r.status);
    const j = await r.json();
    if (id !== page.job) return;
    page.interval = j.batch_interval_ms || page.interval;
    const fresh = j.batches.filter((b) => b[0] > page.last);
    if (fresh.length) {
      page.rows.push(...fresh);
      page.last = fresh[fresh.length - 1][0];
    }
    trimWindow();
    drawJob();
  }

  function trimWindow() {
    const w = windowSeconds();
    const keep = w > 0 ? w * 1000 : Infinity;
    if (!page.rows.length) return;
    const newest = page.rows[page.rows.length - 1][1];
    let cut = 0;
    while (cut < page.rows.length && newest - page.rows[cut][1] > keep) cut++;
    if (cut) page.rows.splice(0, cut);
    if (page.rows.length > 20000) page.rows.splice(0, page.rows.length - 20000);
  }

  const SERIES = [
    { key: 'rate', color: '#2563eb', value: (b) => b[2] * 1000 / page.interval, fmt: fmtRate, unit: '/s' },
    { key: 'sched', color: '#d97706', value: (b) => b[4], fmt: fmtMs, unit: 'ms' },
    { key: 'proc', color: '#7c3aed', value: (b) => b[5], fmt: fmtMs, unit: 'ms' },
    { key: 'total', color: '#dc2626', value: (b) => b[6], fmt: fmtMs, unit: 'ms' },
  ];

  function drawJob() {
    const rows = page.rows;
    for (const s of SERIES) {
      const data = rows.map((b) => [new Date(b[1]), s.value(b)]);
      $('last-' + s.key).textContent = rows.length ? s.fmt(s.value(rows[rows.length - 1])) : '';
      let g = page.charts[s.key];
      if (!data.length) {
        if (g) { g.destroy(); delete page.charts[s.key]; }
        continue;
      }
      if (typeof Dygraph === 'undefined') continue;
      if (!g) {
        page.charts[s.key] = new Dygraph($('chart-' + s.key), data, {
          labels: ['time', s.key], colors: [s.color], strokeWidth: 1.5, fillGraph: true, fillAlpha: 0.12,
          legend: 'never', drawGrid: true, yRangePad: 8, gridLineColor: '#eef1f5', axisLineColor: '#cbd5e1',
          axisLabelFontSize: 11, includeZero: true, animatedZooms: false,
          axes: {
            x: { pixelsPerLabel: 70 },
            y: { axisLabelWidth: 56, valueFormatter: s.fmt, axisLabelFormatter: (v) => fmtAxis(v, s.unit) },
          },
          drawCallback: () => markDrawn(),
        });
      } else {
        g.updateOptions({ file: data });
      }
    }
    const tbody = $('batches-table').tBodies[0];
    const last = rows.slice(-12).reverse().map((b) => el('tr', {},
      num(fmtInt(b[0])), td(fmtBatchTime(b[1])), num(fmtInt(b[2])), num(fmtInt(b[3])),
      num(fmtMs(b[4]), delayClass(b[4], page.interval)), num(fmtMs(b[5]), delayClass(b[5], page.interval)),
      num(fmtMs(b[6]), delayClass(b[6], page.interval)), num(String(b[8])),
      num(fmtInt(b[7]), b[7] ? 'warn' : ''), num(b[9] + ' / ' + b[10], b[10] ? 'warn' : '')));
    fill(tbody, last, 10, page.job ? 'No committed batch yet.' : 'No job selected.');
    const charts = Object.keys(page.charts).length;
    $('charts-state').textContent = rows.length
      ? 'charts drawn: ' + charts + ' of 4, ' + rows.length + ' batches (' + fmtInt(rows[0][0]) + '–' +
        fmtInt(rows[rows.length - 1][0]) + '), newest ' + fmtTime(rows[rows.length - 1][1])
      : 'charts: waiting for batches';
    document.body.dataset.chartPoints = String(rows.length);
  }

  function markDrawn() {
    page.drawn++;
    document.body.dataset.chartsDrawn = String(Object.keys(page.charts).length);
  }

  // ---- the loop ----
  async function pollStatus() {
    const r = await fetch('/api/status', { cache: 'no-store' });
    if (!r.ok) throw new Error('/api/status: HTTP ' + r.status);
    const s = await r.json();
    renderHeader(s);
    renderBanner(s);
    renderSummary(s);
    renderJobs(s);
    renderDrivers(s);
    renderWorkers(s);
    renderTimeline(s);
    return s;
  }

  async function tick() {
    try {
      await pollStatus();
      await pollJob();
      page.failures = 0;
      $('live-dot').className = 'dot ok';
      $('updated').textContent = 'live · updated ' + fmtTime(Date.now());
    } catch (e) {
      page.failures++;
      $('live-dot').className = 'dot bad';
      $('updated').textContent = 'cannot reach this driver (' + e.message + '); retrying';
    }
    setTimeout(tick, POLL_MS);
  }

  document.addEventListener('DOMContentLoaded', () => {
    // Dygraphs' legend writes inline styles, which the page's
    // Content-Security-Policy refuses; the charts' headers show the values.
    if (typeof Dygraph !== 'undefined') Dygraph.PLUGINS = Dygraph.PLUGINS.filter((p) => p !== Dygraph.Plugins.Legend);
    $('job-select').addEventListener('change', (e) => selectJob(e.target.value, page.interval));
    $('window-select').addEventListener('change', () => { page.last = 0; page.rows = []; page.polling = null; pollJob(); });
    tick();
  });
})();
