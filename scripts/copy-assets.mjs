// Copies non-TypeScript assets (the Redis function library) next to the compiled code.
import { cpSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

for (const dir of ['notify']) {
  mkdirSync(join('dist', dir), { recursive: true });
  for (const file of readdirSync(join('src', dir))) {
    if (file.endsWith('.lua')) cpSync(join('src', dir, file), join('dist', dir, file));
  }
}
