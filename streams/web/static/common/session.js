// What every page of streams/web shares: calling this origin's JSON API with the browser session
// of POST /v1/session (docs/web.md). State-changing calls send X-Pulse-CSRF = the pulse_csrf
// cookie (the double-submit CSRF defence the API checks). Load it before the page's own script:
//   <script src="/static/common/session.js" defer></script>
// and use PulseSession.api(method, path, body) -> Promise<{status, body}> (status 0: unreachable),
// PulseSession.message(res, fallback) -> the API's error message, PulseSession.cookie(name).
"use strict";

window.PulseSession = (() => {
  function cookie(name) {
    const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
  }

  async function api(method, path, body) {
    const headers = {Accept: "application/json"};
    if (method !== "GET") headers["X-Pulse-CSRF"] = cookie("pulse_csrf");
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(path, {method, headers, credentials: "same-origin",
                             body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (e) {
      return {status: 0, body: {error: {message: `the API at ${location.origin} cannot be reached; is it running?`}}};
    }
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    return {status: r.status, body: data};
  }

  function message(res, fallback) {
    return (res.body && res.body.error && res.body.error.message) || fallback;
  }

  return {cookie, api, message};
})();
