import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { renderUi } from '../../test/render';
import { ACTIONS, ActionBadge, AuditChanges } from './auditFormat';

describe('audit entries of a leaked key', () => {
  it('names key.leaked, and offers it as an action filter', () => {
    renderUi(<ActionBadge action="key.leaked" />);
    expect(screen.getByText('Key leaked')).toBeInTheDocument();
    expect(ACTIONS.map((a) => a.value)).toContain('key.leaked');
  });

  it('says where the leak was reported from, and links to where it was seen', () => {
    renderUi(
      <AuditChanges
        action="key.leaked"
        changes={{
          source: 'github',
          url: 'https://github.com/acme/app/blob/abc123/.env#L3',
          found_in: 'commit',
          is_active: { from: true, to: false },
        }}
      />,
    );
    expect(screen.getByText('GitHub secret scanning')).toBeInTheDocument();
    const link = screen.getByRole('link', { name: 'https://github.com/acme/app/blob/abc123/.env#L3' });
    expect(link).toHaveAttribute('target', '_blank');
    expect(link).toHaveAttribute('rel', 'noopener noreferrer');
    expect(screen.getByText('commit')).toBeInTheDocument();
    expect(screen.getByText('true → false')).toBeInTheDocument();
  });

  it('makes no link of an address that is not http or https', () => {
    renderUi(<AuditChanges action="key.leaked" changes={{ source: 'report', url: 'javascript:alert(1)' }} />);
    expect(screen.queryByRole('link')).not.toBeInTheDocument();
    expect(screen.getByText('javascript:alert(1)')).toBeInTheDocument();
    expect(screen.getByText('Leak report')).toBeInTheDocument();
  });
});
