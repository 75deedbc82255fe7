/**
 * How often three `unibus serve` nodes started at the same instant on empty
 * data dirs form a JetStream meta group of all three, with no second try:
 * `starts` cold starts, `atOnce` clusters at a time (the others' load is each
 * one's noise, as on a busy host), counting those a left-out node healed.
 *
 * @module
 */

export {
  type ColdStartFigures,
  coldStarts as benchColdStart,
} from "../../tests/helpers/cold_start.ts";
