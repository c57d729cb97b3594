// The live worklist. Every few seconds the page asks the node what changed since it last
// looked (/worklist/changes: a small JSON answer); when something did, it fetches its rows
// again with the same filters and page and swaps them in place, keeping scroll and focus.
// A study that turned positive meanwhile is highlighted until it is opened (or for a
// while) and, when the reader has allowed it with the checkbox, raises a desktop
// notification with its impression; clicking the notification opens the study.
"use strict";
const LIVE = {
  pollMs: 2500,
  // A refresh now and then even when nothing seems to have changed: a backstop.
  refreshMs: 60000,
  highlightMs: 15 * 60 * 1000,
  highlights: "radassist.new-positives",  // sessionStorage: {study uid: until (ms)}
  notified: "radassist.notified",  // sessionStorage: study uids already announced
  notify: "radassist.notify",  // localStorage: "on" once the reader asked for notifications
};

const readStored = (storage, key, fallback) => {
  try {
    return JSON.parse(storage.getItem(key)) || fallback;
  } catch (error) {
    return fallback;
  }
};

const writeStored = (storage, key, value) => {
  try {
    storage.setItem(key, JSON.stringify(value));
  } catch (error) {
    // Storage full or refused: the page still works, it only forgets on reload.
  }
};

// A study opened (from its row, a notification, or any link) is no longer new.
const markSeen = (studyUid) => {
  const highlights = readStored(sessionStorage, LIVE.highlights, {});
  if (studyUid in highlights) {
    delete highlights[studyUid];
    writeStored(sessionStorage, LIVE.highlights, highlights);
  }
};

document.addEventListener("DOMContentLoaded", () => {
  const opened = window.location.pathname.match(/\/studies\/([^/]+)$/);
  if (opened) markSeen(decodeURIComponent(opened[1]));
});

const notificationControl = (box, state) => {
  const control = document.getElementById("notify-control");
  if (!box || !control || !("Notification" in window)) return () => false;
  control.hidden = false;
  const say = (text) => { if (state) state.textContent = text; };
  box.checked = localStorage.getItem(LIVE.notify) === "on" && Notification.permission === "granted";
  box.addEventListener("change", async () => {
    if (!box.checked) {
      localStorage.setItem(LIVE.notify, "off");
      say("");
      return;
    }
    // Asked only here, after the reader's click.
    const permission = Notification.permission === "default"
      ? await Notification.requestPermission()
      : Notification.permission;
    if (permission === "granted") {
      localStorage.setItem(LIVE.notify, "on");
      say("");
    } else {
      box.checked = false;
      localStorage.setItem(LIVE.notify, "off");
      say("This browser blocks notifications from this site: allow them in its site settings.");
    }
  });
  return () => box.checked && Notification.permission === "granted";
};

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("worklist");
  if (!list || !list.dataset.changes) return;
  const news = document.getElementById("worklist-news");
  const notifying = notificationControl(
    document.getElementById("notify"), document.getElementById("notify-state"));
  let token = list.dataset.token;
  let stale = false;
  let busy = false;
  let lastRefresh = Date.now();
  const notified = new Set(readStored(sessionStorage, LIVE.notified, []));
  // Studies already positive on the page as it loaded are not news.
  list.querySelectorAll("tr.study.positive").forEach((row) => notified.add(row.dataset.study));

  const highlight = () => {
    const now = Date.now();
    const highlights = readStored(sessionStorage, LIVE.highlights, {});
    for (const [uid, until] of Object.entries(highlights)) {
      if (until < now) delete highlights[uid];
    }
    writeStored(sessionStorage, LIVE.highlights, highlights);
    list.querySelectorAll("tr.study").forEach((row) => {
      const fresh = row.dataset.study in highlights;
      row.classList.toggle("new-positive", fresh);
      let flag = row.querySelector(".new-flag");
      if (fresh && !flag) {
        flag = document.createElement("span");
        flag.className = "new-flag";
        flag.title = "A new positive, not opened yet";
        flag.textContent = "new";
        const spoken = document.createElement("span");
        spoken.className = "visually-hidden";
        spoken.textContent = " positive, not opened yet:";
        flag.append(spoken);
        row.cells[0].prepend(flag);
      } else if (!fresh && flag) {
        flag.remove();
      }
    });
  };

  const refresh = async () => {
    lastRefresh = Date.now();
    const response = await fetch(list.dataset.refresh, { credentials: "same-origin" });
    if (response.redirected) {  // logged out meanwhile: show the login page
      window.location.reload();
      return;
    }
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !type.startsWith("text/html")) return;
    const html = await response.text();
    // The fragment's only focusable things are links: the same href finds the same one.
    const focused = document.activeElement;
    const focusHref = focused && list.contains(focused) ? focused.getAttribute("href") : null;
    const [x, y] = [window.scrollX, window.scrollY];
    list.innerHTML = html;
    highlight();
    if (focusHref) {
      const again = [...list.querySelectorAll("a[href]")]
        .find((link) => link.getAttribute("href") === focusHref);
      if (again) again.focus({ preventScroll: true });
    }
    window.scrollTo(x, y);
  };

  const announce = (positives) => {
    const highlights = readStored(sessionStorage, LIVE.highlights, {});
    for (const positive of positives) {
      notified.add(positive.study_uid);
      highlights[positive.study_uid] = Date.now() + LIVE.highlightMs;
      if (notifying()) {
        try {
          const note = new Notification("New positive study", {
            body: positive.impression,
            tag: positive.study_uid,  // one notification per study, however many tabs
          });
          note.addEventListener("click", () => {
            window.focus();
            markSeen(positive.study_uid);
            window.location.assign(positive.url);
            note.close();
          });
        } catch (error) {
          // Where pages may not construct one (Chrome on Android): the highlight stays.
        }
      }
    }
    writeStored(sessionStorage, LIVE.highlights, highlights);
    writeStored(sessionStorage, LIVE.notified, [...notified].slice(-500));
    if (news) news.textContent = positives.map((p) => `New positive: ${p.impression}`).join(" ");
  };

  const poll = async () => {
    if (busy) return;
    busy = true;
    try {
      const url = new URL(list.dataset.changes, window.location.href);
      if (token) url.searchParams.set("since", token);
      const response = await fetch(url, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (response.redirected) {  // logged out (idle, or elsewhere): show the login page
        window.location.reload();
        return;
      }
      if (!response.ok) {
        if (response.status === 400) token = "";  // a token it cannot read: start afresh
        return;
      }
      const answer = await response.json();
      token = answer.token;
      const positives = answer.new_positives.filter((p) => !notified.has(p.study_uid));
      if (positives.length) announce(positives);
      if (answer.changed || positives.length || Date.now() - lastRefresh > LIVE.refreshMs) {
        stale = true;
      }
      if (stale && !document.hidden) {
        stale = false;
        await refresh();
      } else {
        highlight();  // a highlight's time may be up
      }
    } catch (error) {
      // The next tick tries again; the page keeps what it shows.
    } finally {
      busy = false;
    }
  };

  // A row clicked (its link opens the study) is no longer new.
  list.addEventListener("click", (event) => {
    const row = event.target.closest("tr.study");
    if (row && row.classList.contains("new-positive")) {
      markSeen(row.dataset.study);
      highlight();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && stale) poll();
  });
  highlight();
  setInterval(poll, LIVE.pollMs);
});

// The study page's slice images: window presets, zoom (buttons, the mouse wheel) and,
// where there are several, stepping through the flagged slices (buttons, arrow keys).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".slice-viewer").forEach((viewer) => {
    const image = viewer.querySelector("img");
    const where = viewer.querySelector(".where");
    const slices = viewer.dataset.slices.split(",").filter(Boolean).map(Number);
    const count = viewer.dataset.count;
    let index = 0;
    let windowName = "brain";
    let scale = 1;
    const source = () => {
      const base = viewer.dataset.pattern
        ? viewer.dataset.pattern.replace(/\/0\.png$/, `/${slices[index]}.png`)
        : viewer.dataset.src;
      return `${base}?window=${windowName}`;
    };
    const zoom = (factor) => {
      scale = factor === 0 ? 1 : Math.min(8, Math.max(1, scale * factor));
      image.style.transform = `scale(${scale})`;
    };
    const show = () => {
      image.src = source();
      if (where) {
        where.textContent = `slice ${slices[index]} of ${count} · flagged ${index + 1} of ${slices.length}`;
        image.alt = `Flagged slice ${slices[index]} of ${count}`;
      }
      viewer.querySelectorAll("[data-window]").forEach((button) => {
        button.setAttribute("aria-pressed", String(button.dataset.window === windowName));
      });
    };
    const step = (by) => {
      index = (index + by + slices.length) % slices.length;
      show();
    };
    viewer.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      if (button.dataset.window) {
        windowName = button.dataset.window;
        show();
      } else if (button.dataset.step) {
        step(Number(button.dataset.step));
      } else if (button.dataset.zoom) {
        zoom(Number(button.dataset.zoom));
      }
    });
    image.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = image.getBoundingClientRect();
      image.style.transformOrigin =
        `${(100 * (event.clientX - box.left)) / box.width}% ${(100 * (event.clientY - box.top)) / box.height}%`;
      zoom(event.deltaY < 0 ? 1.25 : 0.8);
    }, { passive: false });
    if (slices.length > 1) {
      viewer.tabIndex = 0;
      viewer.addEventListener("keydown", (event) => {
        if (event.key === "ArrowRight" || event.key === "ArrowDown") step(1);
        else if (event.key === "ArrowLeft" || event.key === "ArrowUp") step(-1);
        else return;
        event.preventDefault();
      });
    }
  });
});
