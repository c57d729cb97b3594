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
