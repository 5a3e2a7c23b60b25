import { Format, registerAjvFormats } from '@fastify/type-provider-typebox';

registerAjvFormats();
// ajv-formats' RFC 3339 check lets through a leap second (`…T23:59:60Z`) and an hour-only offset (`+02`), which
// `Date.parse` cannot read: a `date-time` the API accepts must also be an instant, or it would reach the
// services as NaN (a 500, a filter that matches nothing, a usage row the database refuses).
const rfc3339 = Format.Get('date-time');
Format.Set('date-time', (value) => (rfc3339?.(value) ?? false) && Number.isFinite(Date.parse(value)));
