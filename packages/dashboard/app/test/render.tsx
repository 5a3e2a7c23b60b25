import { MantineProvider } from '@mantine/core';
import { render } from '@testing-library/react';
import type { ReactElement } from 'react';
import { theme } from '../theme';

/** Renders under Mantine, without transitions (so dialogs open and close at once). */
export function renderUi(ui: ReactElement) {
  return render(
    <MantineProvider
      theme={{ ...theme, respectReducedMotion: false, components: { ...theme.components, Transition: { defaultProps: { duration: 0 } } } }}
      env="test"
    >
      {ui}
    </MantineProvider>,
  );
}
