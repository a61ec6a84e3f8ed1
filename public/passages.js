// The passage panel shows one passage: the one the reader clicked (#26).
//
// Chainlit 2.12 opens its side panel by itself whenever an answer's side elements
// arrive, titled with the last one but showing every passage of the chat one after
// another. A panel showing more than one passage is therefore never one the reader
// asked for: it is closed, or, when the reader had clicked a citation, that
// citation's passage is shown again (Chainlit's own click shows exactly one).
(() => {
  let clicked = null; // the link text of the citation last clicked
  document.addEventListener(
    "click",
    (event) => {
      const link = event.target.closest && event.target.closest("a.element-link");
      if (link && event.isTrusted) clicked = link.textContent.trim();
    },
    true,
  );
  const oneAtATime = () => {
    const content = document.getElementById("side-view-content");
    if (!content || content.children.length <= 1) return;
    const links = [...document.querySelectorAll("a.element-link")].reverse();
    const again = clicked && links.find((a) => a.textContent.trim() === clicked);
    if (again) {
      again.click();
      return;
    }
    const close = document.querySelector("#side-view-title button");
    if (close) close.click();
  };
  new MutationObserver(oneAtATime).observe(document.documentElement, {
    childList: true,
    subtree: true,
  });
})();
