// The shop page: a user's live top-K (Server-Sent Events) and the catalogue.
// Every button posts to /api/collect; recsys web forwards it to the stream worker.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let user = new URLSearchParams(location.search).get("user") || localStorage.getItem("recsys-user") || "";
  let source = null;
  let updates = 0;
  let previous = new Set();
  let lastList = null;
  const hidden = {};   // user -> items marked "not interested" on this page

  function status(text, bad) {
    const el = $("status");
    el.textContent = text;
    el.className = bad ? "bad" : "";
  }

  function card(entry, rank, isNew) {
    const node = $("card-template").content.firstElementChild.cloneNode(true);
    node.dataset.item = entry.item;
    node.querySelector(".rank").textContent = rank ? rank + "." : "";
    node.querySelector(".name").textContent = entry.name || entry.item;
    node.querySelector(".category").textContent = entry.category || "";
    node.querySelector(".item-id").textContent = entry.item;
    node.querySelector(".score").textContent =
      entry.score === null || entry.score === undefined ? "" : "score " + Number(entry.score).toFixed(3);
    node.querySelector(".why").textContent = entry.why || "";
    if (isNew) node.classList.add("new");
    return node;
  }

  function renderList(data) {
    lastList = data;
    const skip = hidden[user] || new Set();
    const items = (data.items || []).filter((e) => !skip.has(e.item));
    const list = $("rec-list");
    const nodes = items.map((entry, i) => {
      const li = document.createElement("li");
      li.className = "rec-card";
      li.appendChild(card(entry, i + 1, previous.size > 0 && !previous.has(entry.item)));
      return li;
    });
    list.replaceChildren(...nodes);
    previous = new Set(items.map((e) => e.item));
    $("rec-empty").hidden = items.length > 0;
    $("model-version").textContent = data.model_version || "-";
    $("variant").textContent = data.variant || "-";
    $("list-reason").textContent = data.source === "hot-items" ? "popular items (no list yet)"
      : data.reason ? "after " + data.reason : "";
    showAge();
  }

  function showAge() {
    const t = lastList && lastList.emitted_at;
    $("list-age").textContent = t ? "list " + Math.max(0, Date.now() / 1000 - t).toFixed(0) + " s old" : "";
  }
  setInterval(showAge, 1000);

  function connect() {
    if (source) source.close();
    previous = new Set();
    updates = 0;
    $("update-count").textContent = "0";
    $("current-user").textContent = user;
    $("user-input").value = user;
    source = new EventSource("/api/stream/" + encodeURIComponent(user));
    source.onopen = () => { $("stream-state").textContent = "live"; $("stream-state").className = "pill ok"; };
    source.onerror = () => {
      $("stream-state").textContent = "reconnecting"; $("stream-state").className = "pill bad";
      document.body.dataset.reconnects = String(Number(document.body.dataset.reconnects || 0) + 1);
    };
    source.addEventListener("current", (ev) => {
      const data = JSON.parse(ev.data);
      if ((data.items || []).length) renderList(data);
      else fetch("/api/lists/" + encodeURIComponent(user)).then((r) => r.json()).then(renderList).catch(() => {});
    });
    source.addEventListener("list", (ev) => {
      updates += 1;
      $("update-count").textContent = String(updates);
      renderList(JSON.parse(ev.data));
    });
  }

  function setUser(next) {
    user = next.trim();
    if (!user) return;
    localStorage.setItem("recsys-user", user);
    history.replaceState(null, "", "/?user=" + encodeURIComponent(user));
    connect();
  }

  async function act(item, body, label) {
    if (!user) { status("pick a shopper first", true); return; }
    status(label + " " + item + " ...");
    try {
      const resp = await fetch("/api/collect", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({user: user, item: item, ...body}),
      });
      const answer = await resp.json().catch(() => ({}));
      if (resp.ok) status(label + " " + item + ": sent (" + resp.status + ")");
      else status(label + " " + item + ": refused, " + (answer.error || resp.status) + " " + (answer.detail || ""), true);
    } catch (err) {
      status(label + " " + item + ": " + err, true);
    }
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button");
    const cardNode = button && button.closest(".card");
    if (!cardNode) return;
    const item = cardNode.dataset.item;
    // Feedback on the recommendations list says so: the learner's gate does not judge rankings on it.
    const fromList = cardNode.closest("#recs") !== null;
    if (button.dataset.rating) {
      act(item, {rating: Number(button.dataset.rating), from_list: fromList}, "rated " + button.dataset.rating);
    } else if (button.dataset.event) {
      if (button.dataset.event === "dislike") {
        (hidden[user] = hidden[user] || new Set()).add(item);
        if (lastList) renderList(lastList);
      }
      act(item, {event: button.dataset.event, from_list: fromList}, button.textContent);
    }
  });

  $("user-form").addEventListener("submit", (ev) => { ev.preventDefault(); setUser($("user-input").value); });

  // Search: the catalogue's matches, personalised by the user's ranker (POST /rerank/ on
  // the worker), or in their plain order with the box ticked.
  let lastSearch = null;
  function showSearch() {
    if (!lastSearch) return;
    const plain = $("search-plain").checked || !lastSearch.personalised;
    const entries = plain ? lastSearch.plain : lastSearch.personalised;
    $("search-grid").replaceChildren(...entries.map((e, i) => card(e, i + 1, false)));
    $("search-grid").dataset.order = plain ? "plain" : "personalised";
    $("search-note").textContent = entries.length + " results, " + (plain ? "plain order"
      : "in " + (lastSearch.user || "the shopper") + "'s order (" + (lastSearch.variant || "-") + ")")
      + (lastSearch.error ? " - personalised order unavailable: " + lastSearch.error : "");
  }
  async function search(q) {
    const url = "/api/search?q=" + encodeURIComponent(q) + "&user=" + encodeURIComponent(user);
    try {
      lastSearch = await (await fetch(url)).json();
      showSearch();
    } catch (err) { status("search failed: " + err, true); }
  }
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search($("search-input").value); });
  $("search-plain").addEventListener("change", showSearch);

  async function loadCatalogue() {
    try {
      const data = await (await fetch("/api/catalogue")).json();
      const shown = data.items.length < data.total ? data.items.length + " of " : "";
      $("catalogue-note").textContent = data.named ? shown + data.total + " items"
        : shown + data.total + " item ids seen so far (no items topic yet)";
      $("catalogue-grid").replaceChildren(...data.items.map((e) => card(e, 0, false)));
    } catch (err) { /* next time */ }
  }

  async function loadUsers() {
    try {
      const data = await (await fetch("/api/users")).json();
      $("known-users").replaceChildren(...data.users.map((u) => { const o = document.createElement("option"); o.value = u; return o; }));
      if (!user && data.users.length) setUser(data.users[0]);
    } catch (err) { /* next time */ }
  }

  loadCatalogue();
  loadUsers();
  setInterval(loadCatalogue, 15000);
  setInterval(loadUsers, 15000);
  if (user) setUser(user);
})();
