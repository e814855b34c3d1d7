// Swagger UI for /docs, started from our own file (the CSP allows no inline script).
(() => {
  "use strict";
  const element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    validatorUrl: null, // never call validator.swagger.io
  });
})();
