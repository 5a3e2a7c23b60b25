import { Format, registerAjvFormats } from '@fastify/type-provider-typebox';
import type { TValidationError } from 'typebox/error';
import { Locale } from 'typebox/system';
import { INSTANT_RANGE, isBoundedInstant } from '../domain.js';

registerAjvFormats();
// ajv-formats' RFC 3339 check lets through a leap second (`…T23:59:60Z`) and an hour-only offset (`+02`), which
// `Date.parse` cannot read: a `date-time` the API accepts must also be an instant, or it would reach the
// services as NaN (a 500, a filter that matches nothing, a usage row the database refuses). It must also be one
// the API can show again: an offset can carry `9999-12-31T23:59:59.999-23:59` into year 10000, which no
// `date-time` in a response can hold (stored, it broke every list of keys).
const rfc3339 = Format.Get('date-time');
Format.Set('date-time', (value) => (rfc3339?.(value) ?? false) && isBoundedInstant(Date.parse(value)));

// The message names the range, so a refused date says why (the field is named by the error's path).
const english = Locale.Get();
Locale.Set((error: TValidationError) =>
  error.keyword === 'format' && error.params.format === 'date-time'
    ? `must be an RFC 3339 date-time between ${INSTANT_RANGE}`
    : english(error),
);
