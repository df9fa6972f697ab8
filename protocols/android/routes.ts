/**
 * The DPC device API (CONTRACTS.md section 1, Android):
 *   POST /android/v1/enroll                 token + device facts -> device id and a credential (shown once)
 *   POST /android/v1/checkin                report status; get the effective policy and queued commands
 *   POST /android/v1/commands/{id}/result   report a command's outcome
 * Bodies are JSON, bounded, validated; errors are problem+json with a stable `code`.
 */
import crypto from 'node:crypto';
import express, { Router, type NextFunction, type Request, type Response } from 'express';
import type { CommandService } from '../../src/core/commands';
import { EnrollmentRefusal, REFUSAL_MESSAGES, type Allowed, type EnrollmentFacts } from '../../src/core/enrollment-policy';
import { Errors } from '../../src/core/errors';
import type { Policy } from '../../src/core/policies';
import { hashSecret } from '../../src/core/secrets';
import { requireJson } from '../../src/http/problem';
import { parseInput } from '../../src/http/validate';
import type { DpcIdentity, PgAndroidStore } from '../../src/storage/android';
import type { PgEnrollmentGate } from '../../src/storage/enrollment-gate';
import type { EnrollmentToken } from '../../src/storage/tokens';
import type { PlatformCommands } from '../../src/core/platforms';
import type { DpcCommand } from './commands';
import { CheckinRequestSchema, CommandResultSchema, EnrollRequestSchema, type EnrollRequest } from './dpc';

export const DPC_BODY_LIMIT = '256kb';
/** Most commands handed to a DPC in one check-in answer. */
const COMMANDS_PER_CHECKIN = 20;
/** How often a long-polling check-in looks for new commands. */
const LONG_POLL_STEP_MS = 1000;
/** When a DPC should check in next on its own, without a push (seconds). */
const CHECKIN_INTERVAL_SECONDS = 900;

export interface AndroidRoutesDeps {
  android: PgAndroidStore;
  commands: CommandService;
  /** The Android command plug-in (reads the DPC's result reports). */
  platform: PlatformCommands;
  /** The enrollment rules (restrictions, limits, terms, pre-approval): consulted at the token exchange. */
  gate: PgEnrollmentGate;
  /** Where the terms page lives, for a refusal that asks the user to accept terms. */
  publicUrl: URL;
}

declare module 'express-serve-static-core' {
  interface Request {
    dpc?: DpcIdentity;
  }
}

export function androidRouter(deps: AndroidRoutesDeps): Router {
  const router = Router();
  const json = [requireJson, express.json({ limit: DPC_BODY_LIMIT, strict: true })];

  router.post('/android/v1/enroll', ...json, async (req, res) => {
    const body = parseInput(EnrollRequestSchema, req.body, 'body');
    const credential = `mrd_${crypto.randomBytes(32).toString('base64url')}`;
    const decision = await decideEnrollment(deps, body);
    const { device, reenrolled } = await deps.android.enroll({
      token: body.token,
      mode: body.mode,
      device: body.device,
      fcmToken: body.fcm_token,
      credentialHash: hashSecret(credential),
      applyRules: (conn, deviceId) => deps.gate.apply(deviceId, decision, conn),
    });
    const policy = await deps.android.policyOf(device);
    res.status(201).json({
      device_id: device.id,
      credential, // shown once; only its digest is stored
      reenrolled,
      policy: policyJson(policy),
      checkin_interval_seconds: CHECKIN_INTERVAL_SECONDS,
    });
  });

  // The hot path: one statement for credential and bookkeeping, one to take the commands.
  router.post('/android/v1/checkin', ...json, async (req, res) => {
    const secret = bearer(req);
    const body = parseInput(CheckinRequestSchema, req.body ?? {}, 'body');
    const checkedIn = secret ? await deps.android.checkin(secret, body) : undefined;
    if (!checkedIn) throw unauthorized();
    const { policy } = checkedIn;
    const commands = await takeCommands(deps, checkedIn.enrollment_id, body.wait ?? 0, req);
    const stale = !policy || body.policy_version === undefined || body.policy_version !== policy.version;
    res.json({
      policy: stale ? policyJson(policy) : { id: policy.id, version: policy.version },
      commands,
      checkin_interval_seconds: CHECKIN_INTERVAL_SECONDS,
    });
  });

  router.post('/android/v1/commands/:id/result', authenticate(deps.android), ...json, async (req, res) => {
    const body = parseInput(CommandResultSchema, req.body, 'body');
    const id = req.dpc!;
    const commandId = String(req.params.id);
    const current = await deps.commands.find(commandId);
    // A command of another device looks exactly like one that does not exist: nothing leaks.
    if (!current || current.enrollment_id !== id.enrollment_id) throw Errors.commandNotFound(commandId);
    const outcome = deps.platform.parseResult(body);
    const { changed, command } = await deps.commands.report(id.enrollment_id, commandId, outcome);
    res.json({ id: commandId, status: command?.status ?? current.status, changed });
  });

  return router;
}

/** Hands out up to COMMANDS_PER_CHECKIN commands; with `wait`, holds the request until one is queued. */
async function takeCommands(deps: AndroidRoutesDeps, enrollmentId: string, waitSeconds: number, req: Request): Promise<DpcCommand[]> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    const out = (await deps.commands.nextMany(enrollmentId, COMMANDS_PER_CHECKIN)).map((c) => JSON.parse(c.payload) as DpcCommand);
    if (out.length > 0 || Date.now() >= deadline || req.socket.destroyed) return out;
    await new Promise((r) => setTimeout(r, Math.min(LONG_POLL_STEP_MS, deadline - Date.now())));
  }
}

function authenticate(android: PgAndroidStore) {
  return async (req: Request, _res: Response, next: NextFunction): Promise<void> => {
    const secret = bearer(req);
    const identity = secret ? await android.authenticate(secret) : undefined;
    if (!identity) return next(unauthorized());
    req.dpc = identity;
    next();
  };
}

function bearer(req: Request): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
}

const unauthorized = () => Errors.unauthorized('send the device credential from enrollment as "Authorization: Bearer <credential>"');

function policyJson(policy: Pick<Policy, 'id' | 'version' | 'settings'> | undefined): { id: string; version: number; settings: unknown } | null {
  return policy ? { id: policy.id, version: policy.version, settings: policy.settings } : null;
}

/**
 * The enrollment rules for a DPC's token exchange. A refusal is a JSON error with the reason as its
 * `code`, the activity id, and for terms the page where the user accepts them.
 */
async function decideEnrollment(deps: AndroidRoutesDeps, body: EnrollRequest): Promise<Allowed> {
  const facts: EnrollmentFacts = {
    platform: 'android',
    method: `android_${body.mode}`,
    os: 'android',
    osVersion: body.device.os_version,
    manufacturer: body.device.manufacturer,
    model: body.device.model,
    serial: body.device.serial_number,
    imei: body.device.imei,
    ownershipClaim: 'unknown',
    final: true,
  };
  let token: EnrollmentToken;
  try {
    token = await deps.android.checkToken(body.token);
  } catch (err) {
    await deps.gate.recordTokenRefusal(facts, err);
    throw err;
  }
  const keys = { serial: body.device.serial_number, imei: body.device.imei, hardwareId: body.device.hardware_id };
  try {
    return await deps.gate.decide(
      {
        ...facts,
        userRef: token.user_ref ?? undefined,
        ownershipClaim: token.ownership,
        categoryId: token.category_id,
        policyId: token.policy_id,
        token: { id: token.id, expired: false, revoked: false, usedUp: false },
      },
      keys,
    );
  } catch (err) {
    if (!(err instanceof EnrollmentRefusal)) throw err;
    const termsUrl = err.reason === 'terms_not_accepted' ? new URL(`/enroll/terms?token=${encodeURIComponent(body.token)}`, deps.publicUrl).toString() : undefined;
    throw Errors.of(err.reason, REFUSAL_MESSAGES[err.reason], { activity_id: err.activityId, ...(termsUrl ? { terms_url: termsUrl } : {}) });
  }
}

