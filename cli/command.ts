/**
 * The shape every `unibus` command has, so cli/main.ts can dispatch by name.
 *
 * @module
 */

/** One command: its name in argv and what it does with the rest. */
export interface Command {
  name: string;
  /** Resolves with the exit status: 0 success, 1 runtime failure, 2 usage mistake. */
  run(argv: string[]): Promise<number>;
}
