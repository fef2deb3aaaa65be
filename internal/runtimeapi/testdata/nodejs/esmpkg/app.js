import { sep } from 'node:path';

export const handler = async () => `esm-pkg${sep}`;
