// Sets the colour scheme before the first paint (an external file: the CSP allows no inline script).
(() => {
  try {
    const stored = window.localStorage.getItem('mantine-color-scheme-value');
    const scheme =
      stored === 'light' || stored === 'dark' ? stored : window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
    document.documentElement.setAttribute('data-mantine-color-scheme', scheme);
  } catch {
    document.documentElement.setAttribute('data-mantine-color-scheme', 'light');
  }
})();
