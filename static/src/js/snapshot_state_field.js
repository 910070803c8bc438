/** @odoo-module **/
/* The snapshot's status bar follows a capture live: the page asks the helper how it goes while the
   snapshot is captured and then verified, and reloads when Odoo's bus says that a snapshot's state changed (the cron,
   the journal import or another person's page may be the one that saw it first). */

import {registry} from "@web/core/registry";
import {useService} from "@web/core/utils/hooks";
import {StatusBarField} from "@web/views/fields/statusbar/statusbar_field";
import {onMounted, onWillUnmount} from "@odoo/owl";

// models/deployment_snapshot.py SNAPSHOT_CHANNEL and the notification's type.
const CHANNEL = "deployment_rollback.snapshot";
const NOTIFICATION = "deployment_rollback/snapshot";
// How often a capturing snapshot's page asks the helper: one light request, the helper answers from memory.
const FOLLOW_MS = 2000;

export class SnapshotStateField extends StatusBarField {
    setup() {
        super.setup();
        this.orm = useService("orm");
        this.busService = useService("bus_service");
        this.onNotification = ({detail: notifications}) => {
            const record = this.props.record;
            if (notifications.some((n) => n.type === NOTIFICATION && n.payload.id === record.resId)) {
                this.reload();
            }
        };
        onMounted(() => {
            this.busService.addChannel(CHANNEL);
            this.busService.addEventListener("notification", this.onNotification);
            this.timer = setInterval(() => this.follow(), FOLLOW_MS);
        });
        onWillUnmount(() => {
            clearInterval(this.timer);
            this.busService.removeEventListener("notification", this.onNotification);
            this.busService.deleteChannel(CHANNEL);
        });
    }

    async follow() {
        const record = this.props.record;
        const open = ["capturing", "done"].includes(record.data.state);
        if (this.asking || this.done || !open || !record.resId || record.isDirty) {
            return;
        }
        this.asking = true;
        try {
            // Silent: a helper that does not answer for a moment is no reason for an error dialog.
            const reply = await this.orm.silent.call("deployment.snapshot", "action_follow_capture", [
                [record.resId],
            ]);
            // Taken, then verified: the server says when there is nothing more to wait for.
            this.done = !reply.follow;
            if (reply.state !== record.data.state) {
                await this.reload();
            }
        } catch {
            // The cron and the Refresh button remain.
        } finally {
            this.asking = false;
        }
    }

    async reload() {
        const record = this.props.record;
        // Never throw away what the person is typing (the snapshot's name).
        if (record.isDirty) {
            return;
        }
        await record.load();
        record.model.notify();
    }
}

registry.category("fields").add("deployment_snapshot_state", SnapshotStateField);
