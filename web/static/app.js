// The worklist refreshes itself every 10 seconds, keeping the filters and the page.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("worklist");
  if (!list) return;
  const refresh = async () => {
    if (document.hidden) return;
    try {
      const response = await fetch(list.dataset.refresh, { credentials: "same-origin" });
      if (response.redirected) {  // logged out meanwhile: show the login page
        window.location.reload();
        return;
      }
      if (response.ok && response.headers.get("content-type").startsWith("text/html")) {
        list.innerHTML = await response.text();
      }
    } catch (error) {
      // The next tick tries again; the page keeps what it shows.
    }
  };
  setInterval(refresh, 10000);
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
