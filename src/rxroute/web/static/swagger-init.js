// Starts Swagger UI on /docs. A file rather than an inline script, so the page works under a
// Content-Security-Policy that forbids inline script. The page puts Swagger UI's parameters
// (the OpenAPI URL included) as JSON in the data-config attribute of #swagger-ui.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  var config = JSON.parse(root.getAttribute("data-config"));
  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  window.ui = SwaggerUIBundle(config);
})();
