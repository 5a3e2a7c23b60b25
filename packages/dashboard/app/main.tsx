import '@fontsource-variable/inter/wght.css';
import '@fontsource-variable/jetbrains-mono/wght.css';
import '@mantine/core/styles.css';
import '@mantine/charts/styles.css';
import '@mantine/notifications/styles.css';
import './styles.css';
import { type CSSVariablesResolver, MantineProvider } from '@mantine/core';
import { Notifications } from '@mantine/notifications';
import { setNonce } from 'get-nonce';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { theme } from './theme';

// The server's Content-Security-Policy allows <style> elements only with this response's nonce (Vite's
// `html.cspNonce` puts it in <meta property="csp-nonce">). Mantine's CSS variables and the scroll lock of dialogs
// write such elements, so both are given it.
const nonce = document.querySelector<HTMLMetaElement>('meta[property="csp-nonce"]')?.nonce || undefined;
if (nonce) setNonce(nonce);

// Contrast (WCAG AA) in the light scheme: Mantine's dimmed grey is 3.3:1 on the page background, and its
// "light" badges and alerts print shade 6 on a pale tint; shade 9 and this grey read at 4.5:1 or more.
const TINTED = ['keyward', 'teal', 'red', 'gray', 'orange', 'yellow', 'blue', 'violet', 'grape', 'indigo', 'pink'];
// White on red-6 or teal-6 is 3.3:1; shade 8 reads at 4.5:1.
const FILLED = Object.fromEntries(
  ['red', 'teal', 'orange'].flatMap((color) => [
    [`--mantine-color-${color}-filled`, `var(--mantine-color-${color}-8)`],
    [`--mantine-color-${color}-filled-hover`, `var(--mantine-color-${color}-9)`],
  ]),
);
const resolver: CSSVariablesResolver = () => ({
  variables: {},
  light: {
    ...FILLED,
    '--mantine-color-dimmed': '#5f6670',
    ...Object.fromEntries(
      TINTED.flatMap((color) => [
        [`--mantine-color-${color}-light-color`, `var(--mantine-color-${color}-9)`],
        [`--mantine-color-${color}-light`, `color-mix(in srgb, var(--mantine-color-${color}-6) 10%, transparent)`],
        [`--mantine-color-${color}-light-hover`, `color-mix(in srgb, var(--mantine-color-${color}-6) 16%, transparent)`],
      ]),
    ),
    // Yellow and orange have no shade dark enough for small text on a tint.
    '--mantine-color-yellow-light-color': '#7c5400',
    '--mantine-color-orange-light-color': '#9a3a07',
  },
  // Links in the primary colour: shade 3 on the dark surfaces (shade 4 is 4.2:1).
  dark: { ...FILLED, '--mantine-color-dimmed': '#a3a3ab', '--mantine-color-anchor': 'var(--mantine-color-keyward-3)' },
});

const root = document.getElementById('root');
if (!root) throw new Error('no #root');
createRoot(root).render(
  <StrictMode>
    <MantineProvider
      theme={theme}
      defaultColorScheme="auto"
      cssVariablesResolver={resolver}
      getStyleNonce={nonce ? () => nonce : undefined}
    >
      <Notifications position="bottom-right" limit={3} />
      <App />
    </MantineProvider>
  </StrictMode>,
);
