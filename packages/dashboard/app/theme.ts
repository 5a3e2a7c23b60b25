import { createTheme, type MantineColorsTuple } from '@mantine/core';

const keyward: MantineColorsTuple = [
  '#eef0ff',
  '#dde0ff',
  '#b8befa',
  '#9099f5',
  '#6e78f1',
  '#5964ef',
  '#4c58ee',
  '#3d48d4',
  '#343fbe',
  '#2834a8',
];

export const theme = createTheme({
  primaryColor: 'keyward',
  primaryShade: { light: 6, dark: 6 },
  colors: { keyward },
  fontFamily: "'Inter Variable', Inter, ui-sans-serif, system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
  fontFamilyMonospace: "'JetBrains Mono Variable', ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
  headings: { fontFamily: "'Inter Variable', Inter, ui-sans-serif, system-ui, sans-serif", fontWeight: '650' },
  defaultRadius: 'md',
  cursorType: 'pointer',
  focusRing: 'auto',
  respectReducedMotion: true,
  components: {
    Button: { defaultProps: { fw: 550 } },
    Modal: {
      defaultProps: {
        overlayProps: { backgroundOpacity: 0.45, blur: 2 },
        radius: 'lg',
        closeButtonProps: { 'aria-label': 'Close dialog' },
      },
    },
    Notification: { defaultProps: { closeButtonProps: { 'aria-label': 'Dismiss' } } },
    Tooltip: { defaultProps: { withinPortal: true, fz: 'xs' } },
    // A loader is named ("Loading requests"): a name needs a role, and a status is what a loader is.
    Loader: { defaultProps: { role: 'status' } },
    Card: { defaultProps: { shadow: 'none' } },
  },
});
