/** Admin API client commands (devices, commands, enrollment-token). */
import type { Command } from 'commander';

export function registerClientCommands(_program: Command): void {}
