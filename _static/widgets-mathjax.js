// ipywidgets' html-manager 1.x typesets widget labels through the MathJax 2 API
// (MathJax.Hub.Queue); the book loads MathJax 3, which has no Hub, so every labelled
// widget on a page with maths would throw. Forward the old call to MathJax 3.
(function () {
  function shim() {
    var mj = window.MathJax;
    if (mj && !mj.Hub) {
      mj.Hub = {
        Queue: function (job) {
          var el = job && job[2];
          if (window.MathJax.typesetPromise) {
            window.MathJax.typesetPromise(el ? [el] : undefined).catch(function () {});
          }
        },
      };
    }
  }
  shim();
  document.addEventListener("DOMContentLoaded", shim);
})();
