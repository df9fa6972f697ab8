/** Devices and their commands: list and show devices, queue single and bulk commands, cancel. */
import { z } from '../zod';
import type { CommandService } from '../../core/commands';
import { Errors } from '../../core/errors';
import type { PgDeviceStore } from '../../storage/devices';
import { actorOf } from '../auth';
import { mapPage } from '../../core/pagination';
import type { AdminRoutes } from '../route';
import {
  BulkCommandRequestSchema,
  BulkResultSchema,
  CommandRequestSchema,
  CommandSchema,
  DeviceListQuery,
  DeviceSchema,
  IdParams,
  PageQuery,
  commandJson,
  deviceJson,
  pageOf,
} from '../schemas';

export interface CommandRoutesDeps {
  commands: CommandService;
  devices: Pick<PgDeviceStore, 'get' | 'list'>;
}

export function commandRoutes(routes: AdminRoutes, { commands, devices }: CommandRoutesDeps): void {
  const requireDevice = async (id: string) => {
    const device = await devices.get(id);
    if (!device) throw Errors.deviceNotFound(id);
    return device;
  };

  routes.add({
    method: 'get',
    path: '/devices',
    summary: 'List devices, newest first',
    scope: 'devices:read',
    query: DeviceListQuery,
    responses: { 200: { description: 'a page of devices', schema: pageOf(DeviceSchema, 'DevicePage') } },
    async handle({ query: { limit, cursor, ...filter } }) {
      const page = await devices.list(filter, { limit, cursor });
      return { status: 200, body: mapPage(page, deviceJson) };
    },
  });

  routes.add({
    method: 'get',
    path: '/devices/{id}',
    summary: 'Show one device',
    scope: 'devices:read',
    params: IdParams,
    responses: { 200: { description: 'the device', schema: DeviceSchema }, 404: { description: 'device_not_found' } },
    async handle({ params }) {
      return { status: 200, body: deviceJson(await requireDevice(params.id)) };
    },
  });

  routes.add({
    method: 'post',
    path: '/devices/{id}/commands',
    summary: 'Queue a command for one device',
    scope: 'commands:write',
    params: IdParams,
    body: CommandRequestSchema,
    responses: {
      202: { description: 'queued (or, for a repeated idempotency key, the first command)', schema: CommandSchema },
      404: { description: 'device_not_found' },
      409: { description: 'device_not_enrolled or idempotency_conflict' },
      422: { description: 'command_not_permitted (with the reason) or invalid_params' },
    },
    async handle({ params, body, req }) {
      const { command } = await commands.enqueue(params.id, body as never, actorOf(req));
      return { status: 202, body: commandJson(command), headers: { Location: `/api/v1/commands/${command.id}` } };
    },
  });

  routes.add({
    method: 'get',
    path: '/devices/{id}/commands',
    summary: "A device's commands, newest first",
    scope: 'commands:read',
    params: IdParams,
    query: PageQuery,
    responses: { 200: { description: 'a page of commands', schema: pageOf(CommandSchema, 'CommandPage') }, 404: { description: 'device_not_found' } },
    async handle({ params, query }) {
      await requireDevice(params.id);
      const page = await commands.listForDevice(params.id, query);
      return { status: 200, body: mapPage(page, commandJson) };
    },
  });

  routes.add({
    method: 'post',
    path: '/commands',
    summary: 'Queue one command for many devices (up to 100,000), pushed a chunk at a time as each is committed',
    scope: 'commands:write',
    body: BulkCommandRequestSchema,
    responses: { 202: { description: 'accepted device ids, and rejected ones with a code each', schema: BulkResultSchema } },
    async handle({ body, req }) {
      const { device_ids, ...request } = body;
      const result = await commands.enqueueBulk(device_ids, request as never, actorOf(req));
      return { status: 202, body: result };
    },
  });

  routes.add({
    method: 'get',
    path: '/commands/{id}',
    summary: 'Show one command with its status, timestamps, result and error',
    scope: 'commands:read',
    params: IdParams,
    responses: { 200: { description: 'the command', schema: CommandSchema }, 404: { description: 'command_not_found' } },
    async handle({ params }) {
      return { status: 200, body: commandJson(await commands.get(params.id)) };
    },
  });

  routes.add({
    method: 'delete',
    path: '/commands/{id}',
    summary: 'Cancel a command that has not been sent',
    scope: 'commands:write',
    params: IdParams,
    responses: {
      200: { description: 'the canceled command', schema: CommandSchema },
      404: { description: 'command_not_found' },
      409: { description: 'command_not_cancelable: already sent or finished', schema: z.object({ code: z.string(), command_status: z.string() }) },
    },
    async handle({ params, req }) {
      return { status: 200, body: commandJson(await commands.cancel(params.id, actorOf(req))) };
    },
  });
}
