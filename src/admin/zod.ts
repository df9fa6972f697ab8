/**
 * zod with `.openapi()` added. Admin schemas import `z` from here, so the extension is in place
 * before any schema is built, whatever order modules load in.
 */
import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

extendZodWithOpenApi(z);

export { z };
