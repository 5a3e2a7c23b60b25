import {
  AppShell,
  Avatar,
  Burger,
  Button,
  Center,
  Group,
  Loader,
  type MantineColorScheme,
  NavLink,
  SegmentedControl,
  Stack,
  Text,
  Tooltip,
  useMantineColorScheme,
  VisuallyHidden,
} from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import {
  IconBook2,
  IconChartDonut,
  IconDeviceDesktop,
  IconHistory,
  IconKey,
  IconLogout,
  IconMoon,
  IconSun,
  IconUsers,
  IconWebhook,
} from '@tabler/icons-react';
import { type ReactNode, Suspense } from 'react';
import { Link, Outlet, useLocation } from 'react-router';
import { useSession, useSessionContext } from '../api/session';
import { Logo } from './Logo';

const NAV = [
  { to: '/overview', label: 'Overview', icon: IconChartDonut, roles: ['admin'] },
  { to: '/', label: 'API keys', icon: IconKey, roles: ['admin', 'manager'] },
  { to: '/', label: 'Your keys', icon: IconKey, roles: ['user'] },
  { to: '/users', label: 'Users', icon: IconUsers, roles: ['admin'] },
  { to: '/webhooks', label: 'Webhooks', icon: IconWebhook, roles: ['admin'] },
  { to: '/audit', label: 'Audit log', icon: IconHistory, roles: ['admin'] },
] as const;

const ROLE_LABEL = { admin: 'Admin key', manager: 'Management key', user: 'User' } as const;

function ColorSchemeControl() {
  const { colorScheme, setColorScheme } = useMantineColorScheme();
  const option = (value: MantineColorScheme, label: string, icon: ReactNode) => ({
    value,
    label: (
      <Tooltip label={label} openDelay={300}>
        <Group justify="center" gap={0}>
          {icon}
          <VisuallyHidden>{label}</VisuallyHidden>
        </Group>
      </Tooltip>
    ),
  });
  return (
    <SegmentedControl
      size="xs"
      fullWidth
      aria-label="Theme"
      value={colorScheme}
      onChange={(value) => setColorScheme(value as MantineColorScheme)}
      data={[
        option('auto', 'System theme', <IconDeviceDesktop size={15} aria-hidden />),
        option('light', 'Light theme', <IconSun size={15} aria-hidden />),
        option('dark', 'Dark theme', <IconMoon size={15} aria-hidden />),
      ]}
    />
  );
}

function isActive(pathname: string, to: string): boolean {
  if (to === '/') return pathname === '/' || pathname.startsWith('/keys');
  return pathname === to || pathname.startsWith(`${to}/`);
}

/** The signed-in frame: header (logo, who is signed in, Sign out), navigation, and the page. */
export function Layout() {
  const session = useSession();
  const { signOut } = useSessionContext();
  const [opened, { toggle, close }] = useDisclosure(false);
  const { pathname } = useLocation();
  const items = NAV.filter((item) => (item.roles as readonly string[]).includes(session.role));

  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 232, breakpoint: 'sm', collapsed: { mobile: !opened } }} padding={0}>
      <AppShell.Header className="kw-header">
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger
              opened={opened}
              onClick={toggle}
              hiddenFrom="sm"
              size="sm"
              aria-label={opened ? 'Close navigation' : 'Open navigation'}
            />
            <Link to="/" className="kw-home-link" aria-label="Keyward home">
              <Logo />
            </Link>
          </Group>
          <Group gap="sm" wrap="nowrap">
            <Group gap={8} wrap="nowrap" visibleFrom="xs">
              <Avatar size={28} radius="xl" color="keyward" variant="light" aria-hidden>
                {session.label.slice(0, 1).toUpperCase()}
              </Avatar>
              <Stack gap={0} maw={200}>
                <Text size="sm" fw={550} truncate lh={1.2}>
                  {session.label}
                </Text>
                <Text size="xs" c="dimmed" lh={1.2}>
                  {ROLE_LABEL[session.role]}
                  {session.role === 'manager' && !session.canWrite ? ' · read only' : ''}
                </Text>
              </Stack>
            </Group>
            <Button variant="default" size="xs" leftSection={<IconLogout size={14} aria-hidden />} onClick={signOut}>
              Sign out
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="sm" className="kw-navbar" aria-label="Main">
        <AppShell.Section grow>
          <Stack gap={2}>
            {items.map((item) => (
              <NavLink
                key={item.label}
                component={Link}
                to={item.to}
                label={item.label}
                leftSection={<item.icon size={18} stroke={1.7} aria-hidden />}
                active={isActive(pathname, item.to)}
                onClick={close}
                className="kw-navlink"
                aria-current={isActive(pathname, item.to) ? 'page' : undefined}
              />
            ))}
          </Stack>
        </AppShell.Section>
        <AppShell.Section>
          <Stack gap="sm">
            <NavLink
              href="/docs"
              label="API reference"
              leftSection={<IconBook2 size={18} stroke={1.7} aria-hidden />}
              className="kw-navlink"
            />
            <ColorSchemeControl />
          </Stack>
        </AppShell.Section>
      </AppShell.Navbar>
      <AppShell.Main className="kw-main">
        <div className="kw-page">
          <Suspense
            fallback={
              <Center py={96}>
                <Loader size="sm" aria-label="Loading" />
              </Center>
            }
          >
            <Outlet />
          </Suspense>
        </div>
      </AppShell.Main>
    </AppShell>
  );
}
