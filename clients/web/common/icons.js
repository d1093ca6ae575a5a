// A few line icons (24×24, stroke = currentColor), drawn for kefu: no icon font, no emoji font needed.
const P = {
  chat: "M4 5.5A1.5 1.5 0 0 1 5.5 4h13A1.5 1.5 0 0 1 20 5.5v9a1.5 1.5 0 0 1-1.5 1.5H10l-4.5 4v-4H5.5A1.5 1.5 0 0 1 4 14.5z M8.5 10h.01 M12 10h.01 M15.5 10h.01",
  users: "M9 11a3.2 3.2 0 1 0 0-6.4A3.2 3.2 0 0 0 9 11z M3 20c.4-3.4 3-5.6 6-5.6s5.6 2.2 6 5.6 M16 4.8a3 3 0 0 1 0 5.8 M17.5 14.6c2 .6 3.3 2.6 3.5 5.4",
  clipboard: "M8 4.5H6.5A1.5 1.5 0 0 0 5 6v13.5A1.5 1.5 0 0 0 6.5 21h11a1.5 1.5 0 0 0 1.5-1.5V6a1.5 1.5 0 0 0-1.5-1.5H16 M9 3h6v3H9z M8.5 11h7 M8.5 14.5h7 M8.5 18h4",
  transfer: "M4 8h14 M14.5 4.5 18 8l-3.5 3.5 M20 16H6 M9.5 12.5 6 16l3.5 3.5",
  logout: "M14 4h4a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-4 M10 16l-4-4 4-4 M6 12h10",
  close: "M6 6l12 12 M18 6 6 18",
  check: "M5 12.5l4.5 4.5L19 7.5",
  plus: "M12 5v14 M5 12h14",
  search: "M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14z M20 20l-4-4",
  restart: "M4 12a8 8 0 1 0 2.3-5.6 M4 4v4.5h4.5",
  end: "M6 6h12v12H6z",
  bag: "M5.5 8h13l-1 12.5h-11z M9 8V6.5a3 3 0 0 1 6 0V8",
  coffee: "M5 9h11v5a5 5 0 0 1-5 5h-1a5 5 0 0 1-5-5z M16 10h1.5a2.5 2.5 0 0 1 0 5H16 M8 3.5c0 1.5 1 1.5 1 3 M11.5 3.5c0 1.5 1 1.5 1 3",
  inbox: "M4 13.5 6.5 5h11l2.5 8.5V19a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1z M4 13.5h5l1 2h4l1-2h5",
  clock: "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z M12 7v5l3 2",
  alert: "M12 4 21 19.5H3z M12 10v4 M12 17h.01",
  box: "M4 7.5 12 4l8 3.5v9L12 20l-8-3.5z M4 7.5 12 11l8-3.5 M12 11v9",
  gauge: "M4.5 16a8 8 0 1 1 15 0 M12 16l3.5-5",
  pause: "M9 6v12 M15 6v12",
  settings: "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z M19.4 13.5l1.6 1-1.8 3.1-1.8-.6a7 7 0 0 1-2 1.2L15 20h-3.6l-.4-1.9a7 7 0 0 1-2-1.2l-1.8.6-1.8-3.1 1.5-1a7 7 0 0 1 0-2.4L5.4 10 7.2 6.9l1.8.6a7 7 0 0 1 2-1.2L11.4 4H15l.4 1.9a7 7 0 0 1 2 1.2l1.8-.6L21 9.6l-1.6 1a7 7 0 0 1 0 2.9z",
  store: "M4 9.5 5.5 4h13L20 9.5 M4 9.5a2.7 2.7 0 0 0 5.3 0 2.7 2.7 0 0 0 5.4 0 2.7 2.7 0 0 0 5.3 0 M5.5 12v8h13v-8 M10 20v-4.5h4V20",
  group: "M12 10a3 3 0 1 0 0-6 3 3 0 0 0 0 6z M6 20v-1.5a6 6 0 0 1 12 0V20 M4.5 12.5a2.3 2.3 0 1 0 0-.01 M19.5 12.5a2.3 2.3 0 1 0 0-.01",
  key: "M14.5 9.5a4.5 4.5 0 1 0-4.2 4.5L8 16.3V19h2.5v-2h2v-2l1.6-1.6a4.5 4.5 0 0 0 .4-3.9z M16.5 7.5h.01",
  trash: "M5 7h14 M10 7V5h4v2 M7 7l1 13h8l1-13",
};

export function icon(name, size = 18, cls = "") {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", size);
  svg.setAttribute("height", size);
  svg.setAttribute("fill", "none");
  svg.setAttribute("stroke", "currentColor");
  svg.setAttribute("stroke-width", "1.8");
  svg.setAttribute("stroke-linecap", "round");
  svg.setAttribute("stroke-linejoin", "round");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "ico" + (cls ? " " + cls : ""));
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", P[name] || P.alert);
  svg.append(path);
  return svg;
}

/** Replace every <i data-icon="name"> in `root` by its SVG (for icons written in the HTML). */
export function hydrateIcons(root = document) {
  for (const n of root.querySelectorAll("i[data-icon]")) n.replaceWith(icon(n.dataset.icon, Number(n.dataset.size || 18)));
}
