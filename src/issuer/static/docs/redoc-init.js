// ReDoc for /redocs, started from our own file (the CSP allows no inline script).
(() => {
  "use strict";
  const element = document.getElementById("redoc");
  Redoc.init(element.dataset.specUrl, {}, element);
})();
